//! SIGHUP: the configuration read again and applied to a running guard.

use std::path::Path;

use super::{
    controller::Controller,
    run::{Sources, load_settings},
};
use crate::{
    config::Settings, dataplane::loader::Attached, host::kept_lists::KeptLists,
    model::paths::LISTS_FILE,
};

/// Reads the config again and applies what a running guard can change
/// (mode, limits, lists, the controller's target); the keys that need a
/// restart keep their running values, with a warning; an invalid file
/// changes nothing. The lists are replaced, so an entry taken out of the
/// file stops matching at once. Returns whether anything was applied.
pub fn reload(
    sources: Sources<'_>,
    settings: &mut Settings,
    attached: &mut [Attached],
    controller: Option<&mut Controller<'_>>,
) -> bool {
    let Some(path) = sources.config else {
        tracing::warn!("SIGHUP: guard was started without --config; nothing to reload");
        return false;
    };
    // The kept lists are read and applied under their lock, so a list
    // command running meanwhile lands before or after, never in between.
    let loaded = KeptLists::lock(Path::new(LISTS_FILE)).and_then(|lock| {
        let new = load_settings(sources)?;
        Ok::<_, anyhow::Error>((lock, new))
    });
    let (_lock, new) = match loaded {
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
    tracing::info!(
        "SIGHUP: reloaded {}: {}",
        path.display(),
        applied.describe()
    );
    *settings = applied;
    true
}
