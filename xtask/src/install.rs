//! `cargo xtask install`: the release binary, its man pages and shell
//! completions, the systemd unit and an example config, in the usual
//! places (or under `--dest-dir`, for packaging).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::{build, cmd};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Where the binary and the man pages go (bin/, share/man/man8/).
    #[arg(long, default_value = "/usr/local")]
    prefix: PathBuf,
    /// Stage everything under this directory instead of / (for packages).
    #[arg(long)]
    dest_dir: Option<PathBuf>,
}

pub fn run(opts: &Options) -> Result<()> {
    let artifacts = build::run(&build::Options { release: true })?;
    let root = opts.dest_dir.clone().unwrap_or_else(|| PathBuf::from("/"));
    let under = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let bindir = opts.prefix.join("bin");

    let bin = under(&bindir).join("guard");
    copy(&artifacts.guard, &bin)?;
    set_mode(&bin, 0o755)?;

    let mandir = under(&opts.prefix.join("share/man/man8"));
    cmd::run(
        Command::new(&artifacts.guard)
            .args(["generate", "man"])
            .arg(&mandir),
    )?;
    eprintln!("install: man pages in {}", mandir.display());

    for (shell, path) in [
        (
            "bash",
            Path::new("/usr/share/bash-completion/completions/guard").to_path_buf(),
        ),
        ("zsh", opts.prefix.join("share/zsh/site-functions/_guard")),
        (
            "fish",
            opts.prefix
                .join("share/fish/vendor_completions.d/guard.fish"),
        ),
    ] {
        let out = Command::new(&artifacts.guard)
            .args(["generate", "completions", shell])
            .output()
            .context("running guard generate")?;
        write(&under(&path), &out.stdout)?;
    }

    let unit = include_str!("../../deploy/guard.service")
        .replace("@BINDIR@", &bindir.display().to_string());
    write(
        &under(Path::new("/etc/systemd/system/guard.service")),
        unit.as_bytes(),
    )?;

    let config = under(Path::new("/etc/guard/guard.toml"));
    if config.exists() {
        eprintln!("install: {} exists, left as it is", config.display());
    } else {
        write(&config, include_bytes!("../../guard.example.toml"))?;
    }
    fs::create_dir_all(under(Path::new("/var/lib/guard"))).context("creating /var/lib/guard")?;

    if opts.dest_dir.is_none() && cmd::probe("systemctl", ["daemon-reload"]).is_some() {
        eprintln!("install: systemd reloaded");
    }
    eprintln!(
        "install: done. Next: set the interfaces in /etc/guard/guard.toml (it starts in monitor \
         mode: it counts and drops nothing), then `systemctl enable --now guard`."
    );
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    write(
        to,
        &fs::read(from).with_context(|| format!("reading {}", from.display()))?,
    )
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("install: {}", path.display());
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}
