//! `zkrepl completions` and `zkrepl man`: shell completion scripts and man
//! pages generated from the same clap definitions as `--help`, so they never
//! disagree with it.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::outcome::{Exit, Outcome};

/// The shells a completion script can be printed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ShellArg {
    Bash,
    Zsh,
    Fish,
}

impl From<ShellArg> for clap_complete::Shell {
    fn from(s: ShellArg) -> clap_complete::Shell {
        match s {
            ShellArg::Bash => clap_complete::Shell::Bash,
            ShellArg::Zsh => clap_complete::Shell::Zsh,
            ShellArg::Fish => clap_complete::Shell::Fish,
        }
    }
}

#[derive(Args, Debug)]
#[command(after_long_help = "Install (then start a new shell):\n  \
bash: zkrepl completions bash > ~/.local/share/bash-completion/completions/zkrepl\n  \
zsh:  zkrepl completions zsh > ~/.zfunc/_zkrepl\n        \
(with fpath=(~/.zfunc $fpath) before compinit in ~/.zshrc)\n  \
fish: zkrepl completions fish > ~/.config/fish/completions/zkrepl.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: ShellArg,
}

#[derive(Args, Debug)]
#[command(after_long_help = "Install:\n  \
zkrepl man > ~/.local/share/man/man1/zkrepl.1\n  \
zkrepl man --all ~/.local/share/man/man1      # zkrepl.1, zkrepl-copy.1, ...\n\
then: man zkrepl")]
pub struct ManArgs {
    /// Write one page per command (zkrepl.1, zkrepl-copy.1, ...) into DIR instead of printing zkrepl.1
    #[arg(long, value_name = "DIR")]
    pub all: Option<PathBuf>,
}

/// The completion script for `shell`.
pub fn completion_script(shell: ShellArg, mut cli: clap::Command) -> String {
    let mut out = Vec::new();
    clap_complete::generate(clap_complete::Shell::from(shell), &mut cli, "zkrepl", &mut out);
    String::from_utf8(out).expect("completion scripts are UTF-8")
}

/// The command the man pages are made from: without the `help` subcommand,
/// which has no page of its own (`--help` is described on every page).
fn man_command(cli: clap::Command) -> clap::Command {
    cli.disable_help_subcommand(true)
}

/// The roff man page of zkrepl itself.
pub fn man_page(cli: clap::Command) -> String {
    let mut out = Vec::new();
    clap_mangen::Man::new(man_command(cli)).render(&mut out).expect("rendering into memory");
    String::from_utf8(out).expect("man pages are UTF-8")
}

pub fn run(a: CompletionsArgs, cli: clap::Command) -> zkrepl::Result<Outcome> {
    print!("{}", completion_script(a.shell, cli));
    Ok(Outcome { exit: Exit::Ok })
}

pub fn run_man(a: ManArgs, cli: clap::Command) -> zkrepl::Result<Outcome> {
    let Some(dir) = a.all else {
        print!("{}", man_page(cli));
        return Ok(Outcome { exit: Exit::Ok });
    };
    let fail = |e: std::io::Error| zkrepl::Error::Usage(format!("writing man pages into {}: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(fail)?;
    clap_mangen::generate_to(man_command(cli), &dir).map_err(fail)?;
    Ok(Outcome { exit: Exit::Ok })
}
