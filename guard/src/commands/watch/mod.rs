//! `guard stats --watch`: a live full-screen view of a running guard,
//! refreshed every second: the conntrack fill against its target, the
//! history of drops and fill, the attack signatures and their hits, packet
//! rates, the top sources and the controller's last decision.
//!
//! [`run`] owns the terminal and the sampling; `draw` (in `draw.rs`) is a
//! pure function of a `WatchView`, so the layout is tested on ratatui's
//! `TestBackend`.

mod draw;

use std::{
    io::{self, Stdout},
    sync::{
        Once,
        atomic::{self, AtomicBool},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use crossterm::{
    cursor,
    event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    execute, terminal,
};
use ratatui::{Terminal, backend::CrosstermBackend};

use self::draw::{History, WatchView, draw};
use super::stats::{StatsOptions, take_sample};
use crate::{
    dataplane::pins::Layout,
    host::{clock::unix_now, instances, status_file},
    model::stats::snapshot,
};

/// Time between two samples; the rates are per second over it.
const REFRESH: Duration = Duration::from_secs(1);

/// Runs the live view until `q`, Esc or Ctrl-C.
pub fn run(opts: &StatsOptions) -> Result<()> {
    let layout = &Layout::default();
    // Read once before taking over the terminal, so "no guard is running"
    // is printed like `guard stats` prints it.
    let mut prev = take_sample(layout, opts)?;
    let runtime = &instances::choose(opts.netns.as_deref())?;
    let mut view = WatchView {
        snapshot: snapshot(None, &prev, opts.top, status_file::read(runtime)),
        history: History::default(),
        now: unix_now(),
        run: status_file::read_run(runtime),
    };
    let mut screen = Screen::enter().context("setting up the terminal")?;
    let mut next = Instant::now() + REFRESH;
    loop {
        screen.terminal.draw(|frame| draw(frame, &view))?;
        if quit_requested(next)? {
            return Ok(());
        }
        if Instant::now() >= next {
            let now = take_sample(layout, opts)?;
            view.snapshot = snapshot(Some(&prev), &now, opts.top, status_file::read(runtime));
            view.history.record(&view.snapshot);
            view.now = unix_now();
            view.run = status_file::read_run(runtime);
            prev = now;
            next = Instant::now() + REFRESH;
        }
    }
}

/// Waits for a key until `deadline`: true if it asks to quit. Returns early
/// on a resize, so the caller redraws at the new size.
fn quit_requested(deadline: Instant) -> Result<bool> {
    loop {
        if !event::poll(deadline.saturating_duration_since(Instant::now()))? {
            return Ok(false);
        }
        match event::read()? {
            Event::Key(key) if key.kind == KeyEventKind::Press && is_quit(key) => return Ok(true),
            Event::Resize(..) => return Ok(false),
            _ => {}
        }
    }
}

/// Raw mode turns Ctrl-C into a key, so it is handled here like `q`.
fn is_quit(key: KeyEvent) -> bool {
    match key.code {
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => true,
        KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

/// Whether the terminal is in raw mode on the alternate screen, so that the
/// drop guard and the panic hook restore it once between them.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leaves the alternate screen and raw mode, if entered. Errors are ignored:
/// this runs on the way out, where nothing better can be done.
fn restore() {
    if ACTIVE.swap(false, atomic::Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    }
}

/// Restores the terminal when dropped: on return, on an error, and while
/// unwinding from a panic.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

/// The terminal in raw mode on the alternate screen.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    _restore: Restore,
}

impl Screen {
    fn enter() -> Result<Self> {
        // The hook restores before the message is printed: unwinding would
        // restore too, but only after the message went to the alternate
        // screen and was lost with it.
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, atomic::Ordering::SeqCst);
        let restore = Restore;
        execute!(io::stdout(), terminal::EnterAlternateScreen)?;
        Ok(Self {
            terminal: Terminal::new(CrosstermBackend::new(io::stdout()))?,
            _restore: restore,
        })
    }
}
