//! `guard generate`: shell completions and man pages, straight from the
//! clap definitions, so they can never disagree with `--help`.

use std::{fs, io, path::Path};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

use super::{Cli, Generate, GenerateArgs};

pub fn command(args: &GenerateArgs) -> Result<()> {
    match &args.what {
        Generate::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "guard", &mut io::stdout());
            Ok(())
        }
        Generate::Man { dir } => man_pages(dir),
    }
}

/// `guard.1`, and `guard-<sub>.1` for every subcommand.
pub fn man_pages(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command();
    write_page(dir, "guard", cmd.clone())?;
    for sub in cmd.get_subcommands() {
        let name = format!("guard-{}", sub.get_name());
        write_page(dir, &name, sub.clone().name(name.clone()))?;
    }
    Ok(())
}

fn write_page(dir: &Path, name: &str, cmd: clap::Command) -> Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .with_context(|| format!("rendering {name}.1"))?;
    let path = dir.join(format!("{name}.1"));
    fs::write(&path, page).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_gets_a_man_page() {
        let dir = std::env::temp_dir().join(format!("guard-man-{}", std::process::id()));
        man_pages(&dir).unwrap();
        for page in [
            "guard.1",
            "guard-run.1",
            "guard-stats.1",
            "guard-restore.1",
            "guard-doctor.1",
        ] {
            let text = fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
            assert!(text.contains(".TH"), "{page} is not a man page");
        }
        let run = fs::read_to_string(dir.join("guard-run.1")).unwrap();
        assert!(run.contains("syn\\-rate"), "guard-run.1 lacks --syn-rate");
        fs::remove_dir_all(&dir).unwrap();
    }
}
