//! `guard run`'s settings, from their sources: read at start (the lists
//! once more while attaching, under their lock), and read again and
//! applied to the running guard at SIGHUP.

use std::path::Path;

use anyhow::Result;

use super::{
    controller::Controller,
    kept::{self, KeptLists},
};
use crate::{
    config::{self, RawConfig, Settings},
    dataplane::loader::Attached,
    host::kept_lists,
};

/// Where `guard run` takes its settings from: `--config FILE`, if given,
/// under the flags.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    pub config: Option<&'a Path>,
    pub flags: &'a RawConfig,
    /// The namespace the command was started in (`ip netns exec NAME`):
    /// `netns` when neither the flags nor the file name one.
    pub started_in: Option<&'a str>,
}

/// Flags over the config file over the defaults, plus the lists kept by
/// `guard allow|deny`: what `guard run` starts with, and what SIGHUP
/// reloads; with what the run loop needs to follow the kept lists.
pub fn load_settings(sources: Sources<'_>) -> Result<(Settings, KeptLists)> {
    let file = match sources.config {
        Some(path) => Some((config::read_file(path)?, path)),
        None => None,
    };
    let implied;
    let flags = match sources.started_in {
        Some(name)
            if sources.flags.netns.is_none()
                && file.as_ref().is_none_or(|(raw, _)| raw.netns.is_none()) =>
        {
            implied = RawConfig {
                netns: Some(name.to_owned()),
                ..sources.flags.clone()
            };
            &implied
        }
        _ => sources.flags,
    };
    let mut settings = Settings::resolve(flags, file.as_ref().map(|(raw, path)| (raw, *path)))?;
    let kept = kept::merge(&mut settings);
    Ok((settings, kept))
}

/// Reads the config again and applies what a running guard can change
/// (mode, limits, lists, the controller's target); the keys that need a
/// restart keep their running values, with a warning; an invalid file
/// changes nothing. The lists are replaced, so an entry taken out of the
/// file stops matching at once. Returns whether anything was applied;
/// the caller publishes the new state, then calls [`log_reloaded`].
pub fn reload(
    sources: Sources<'_>,
    settings: &mut Settings,
    attached: &mut [Attached],
    controller: Option<&mut Controller<'_>>,
    kept: &mut KeptLists,
) -> bool {
    let Some(path) = sources.config else {
        tracing::warn!("SIGHUP: guard was started without --config; nothing to reload");
        return false;
    };
    // The kept lists are read and applied under their lock, so a list
    // command running meanwhile lands before or after, never in between.
    let loaded = kept_lists::lock().and_then(|lock| {
        let new = load_settings(sources)?;
        Ok::<_, anyhow::Error>((lock, new))
    });
    let (_lock, (new, new_kept)) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(
                "SIGHUP: {} not reloaded, the running configuration stays: {e:#}",
                path.display()
            );
            return false;
        }
    };
    let reload = settings.reload(new);
    if !reload.kept.is_empty() {
        tracing::warn!(
            "SIGHUP: these need a restart and stay as they are: {}",
            reload.kept.join(", ")
        );
    }
    let applied = reload.applied;
    for a in attached.iter_mut() {
        if let Err(e) = a.reconfigure(&applied) {
            tracing::error!("SIGHUP: {e:#}");
        }
    }
    if let Some(c) = controller {
        c.reconfigure(&applied);
    }
    *settings = applied;
    *kept = new_kept;
    true
}

/// The line that says a reload took; logged once its state is published,
/// so `guard status` read after it shows the new configuration.
pub fn log_reloaded(sources: Sources<'_>, settings: &Settings) {
    if let Some(path) = sources.config {
        tracing::info!(
            "SIGHUP: reloaded {}: {}",
            path.display(),
            settings.describe()
        );
    }
}
