//! The command line's refusals of malformed input: each fails at once, with
//! exit 2 and a line saying what is accepted, before any server is reached;
//! and the completion scripts and man pages, checked against `--help`.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A port where nothing listens: reaching it would only time out.
const NOWHERE: &str = "127.0.0.1:1";

#[test]
fn durations_too_long_for_a_timeout_are_refused_not_wrapped() {
    for flag in ["--timeout", "--session-timeout", "--retry-timeout"] {
        for value in ["99999999999d", "999999999999d", "213503982335d", "25d"] {
            let out = zkrepl(&["digest", "--zk", NOWHERE, "--root", "/", flag, value]);
            assert_exit(&out, 2);
            let err = stderr(&out);
            assert!(err.contains(flag) && err.contains("out of range"), "{flag} {value}: {err}");
            assert!(err.contains("24days 20h 31m 23s 647ms"), "{flag} {value}: {err}");
        }
        for (value, why) in [
            ("99999999999999999999d", "bad duration"),
            ("5", "time unit needed"),
            ("10 parsecs", "unit \"parsecs\" is not one of ms, s, m, h, d, w"),
            ("-1s", "bad duration \"-1s\""),
            ("0s", "out of range: from 1ms"),
            ("500us", "unit \"us\" is not one of ms, s, m, h, d, w"),
            ("1.0005s", "not a whole number of milliseconds"),
            ("10M", "minutes are m"),
            ("1y", "unit \"y\""),
        ] {
            let out = zkrepl(&["digest", "--zk", NOWHERE, "--root", "/", &format!("{flag}={value}")]);
            assert_exit(&out, 2);
            let err = stderr(&out);
            assert!(err.contains(flag) && err.contains(why), "{flag} {value}: want {why:?} in {err}");
        }
    }
}

#[test]
fn ttl_durations_are_checked_against_zookeepers_limit() {
    for (spec, says) in [
        ("/a/*=99999999999999999999d", "bad duration"),
        ("/a/*=99999999999d", "out of range"),
        ("/a/*=1099511627776ms", "out of range"),
        ("/a/*=0s", "out of range"),
        ("/a/*=2x", "unit"),
        ("/a/*=10M", "unit \"M\" is not one of ms, s, m, h, d, w (M is months: minutes are m)"),
        ("/a/*=1y", "unit \"y\""),
    ] {
        let started = Instant::now();
        let out = zkrepl(&["copy", "--src", NOWHERE, "--dst", "127.0.0.1:2", "--root", "/a", "--ttl", spec]);
        assert_exit(&out, 2);
        assert!(stderr(&out).contains(says), "--ttl {spec}: {}", stderr(&out));
        assert!(started.elapsed() < Duration::from_secs(5), "refused before connecting");
    }
}

#[test]
fn help_says_which_durations_are_accepted() {
    let out = zkrepl(&["copy", "--help"]);
    assert_exit(&out, 0);
    let help = stdout(&out);
    for form in ["500ms", "1h30m", "units ms, s, m, h, d, w", "24days 20h 31m 23s 647ms", "2^40 - 1 ms"] {
        assert!(help.contains(form), "copy --help lacks {form:?}:\n{help}");
    }
    let out = zkrepl(&["verify", "--help"]);
    assert!(stdout(&out).contains("1h30m"), "{}", stdout(&out));
}

#[test]
fn a_connect_string_that_cannot_be_a_host_list_fails_at_once() {
    for zk in ["x::y", "127.0.0.1:2181,x::y", "a:b:c/app", "[x::y]:2181"] {
        let started = Instant::now();
        let out = zkrepl(&["digest", "--zk", zk, "--root", "/", "--timeout", "10s"]);
        let took = started.elapsed();
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains("bad host entry") && err.contains("[addr]:port"), "{zk}: {err}");
        assert!(took < Duration::from_secs(3), "{zk}: refused after {took:?}, not at once");
    }
    // The same for both sides of a copy and a verify.
    for cmd in ["copy", "verify"] {
        let out = zkrepl(&[cmd, "--src", "x::y", "--dst", "127.0.0.1:2", "--root", "/a"]);
        assert_exit(&out, 2);
        assert!(stderr(&out).contains("\"x::y\""), "{cmd}: {}", stderr(&out));
    }
}

/// The subcommand names `zkrepl --help` lists (help included).
fn listed_commands() -> Vec<String> {
    let out = zkrepl(&["--help"]);
    assert_exit(&out, 0);
    let help = stdout(&out);
    let list = help.split("Commands:\n").nth(1).expect("a Commands section").split("\n\n").next().unwrap();
    let names: Vec<String> = list
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert!(names.len() > 5, "{help}");
    names
}

/// The about line of one subcommand, as its `--help` prints it.
fn about(command: &str) -> String {
    let out = zkrepl(&[command, "--help"]);
    assert_exit(&out, 0);
    let help = stdout(&out);
    let about = help.split("\n\n").next().unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!about.is_empty() && !about.starts_with("Usage"), "{help}");
    about
}

/// A roff page as the words it shows: escapes undone, white space collapsed.
fn unroff(page: &str) -> String {
    page.replace("\\-", "-").replace("\\*(Aq", "'").split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn bash_completions_know_every_command_and_their_options() {
    let out = zkrepl(&["completions", "bash"]);
    assert_exit(&out, 0);
    let script = stdout(&out);
    assert!(script.contains("complete -F _zkrepl"), "{script}");
    for cmd in ["copy", "verify", "digest"].map(String::from).into_iter().chain(listed_commands()) {
        assert!(script.split_whitespace().any(|w| w.trim_matches('"') == cmd), "bash completions lack {cmd}");
    }
    for opt in ["--dst-root", "--src", "--mirror", "--json"] {
        assert!(script.contains(opt), "bash completions lack {opt}");
    }
}

#[test]
fn zsh_and_fish_completions_are_their_own_shells_scripts() {
    let out = zkrepl(&["completions", "zsh"]);
    assert_exit(&out, 0);
    let zsh = stdout(&out);
    assert!(zsh.starts_with("#compdef zkrepl"), "{zsh}");
    assert!(zsh.contains("--dst-root") && zsh.contains("'copy:"), "{zsh}");

    let out = zkrepl(&["completions", "fish"]);
    assert_exit(&out, 0);
    let fish = stdout(&out);
    assert!(fish.contains("complete -c zkrepl"), "{fish}");
    assert!(fish.contains("-l dst-root") && !fish.contains("#compdef"), "{fish}");
}

#[test]
fn completions_for_an_unknown_shell_are_a_usage_error() {
    for shell in ["powershell", "tcsh", ""] {
        let out = zkrepl(&["completions", shell]);
        assert_exit(&out, 2);
        assert!(stdout(&out).is_empty(), "{shell}: {}", stdout(&out));
        assert!(stderr(&out).contains("[possible values: bash, zsh, fish]"), "{shell}: {}", stderr(&out));
    }
    assert_exit(&zkrepl(&["completions"]), 2);
}

#[test]
fn the_man_page_is_roff_made_from_the_help() {
    let out = zkrepl(&["man"]);
    assert_exit(&out, 0);
    let page = stdout(&out);
    assert!(page.starts_with('.'), "not roff: {page}");
    assert!(page.lines().any(|l| l.starts_with(".TH zkrepl 1 ")), "no .TH title line: {page}");
    let text = unroff(&page);
    for cmd in listed_commands().iter().filter(|c| *c != "help") {
        assert!(text.contains(&format!("zkrepl-{cmd}(1)")), "man page lacks {cmd}");
        let about = about(cmd);
        assert!(text.contains(&about), "man page lacks {cmd}'s about {about:?}");
    }
}

#[test]
fn man_all_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("man1");
    let out = zkrepl(&["man", "--all", into.to_str().unwrap()]);
    assert_exit(&out, 0);
    let top = std::fs::read_to_string(into.join("zkrepl.1")).expect("zkrepl.1");
    assert_eq!(top, stdout(&zkrepl(&["man"])), "zkrepl.1 is what `zkrepl man` prints");
    let copy = std::fs::read_to_string(into.join("zkrepl-copy.1")).expect("zkrepl-copy.1");
    assert!(copy.lines().any(|l| l.starts_with(".TH zkrepl-copy 1 ")), "{copy}");
    let text = unroff(&copy);
    assert!(text.contains(&about("copy")) && text.contains("--dst-root"), "{copy}");
    for cmd in listed_commands().iter().filter(|c| *c != "help") {
        assert!(into.join(format!("zkrepl-{cmd}.1")).is_file(), "no page for {cmd}");
    }
}

#[test]
fn pegasus_set_level_refuses_an_unknown_level_before_reaching_a_meta() {
    for level in ["bogus", "invalid", "fl_blind", "10000"] {
        let started = Instant::now();
        let out = zkrepl(&["pegasus", "set-level", "--meta", NOWHERE, level]);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains("one of stopped, blind, freezed, steady, lively"), "{level}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5), "refused before connecting");
    }
}

#[test]
fn pegasus_status_without_a_reachable_meta_is_an_error_in_words_and_in_json() {
    let out = zkrepl(&["pegasus", "status", "--meta", NOWHERE, "--timeout", "2s"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("no meta reachable (meta server 127.0.0.1:1 refused the connection)"), "{err}");
    assert!(err.contains("--meta"), "the hint names the option: {err}");

    let out = zkrepl(&["pegasus", "status", "--meta", NOWHERE, "--json"]);
    assert_exit(&out, 2);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    assert!(doc["error"].as_str().unwrap().starts_with("no meta reachable"), "{doc}");
    assert!(doc["hint"].as_str().unwrap().contains("--timeout"), "{doc}");

    for bad in ["m1:x", "", "m1/zk"] {
        let out = zkrepl(&["pegasus", "status", "--meta", bad]);
        assert_exit(&out, 2);
        assert!(stderr(&out).contains("--meta takes host[:port]"), "{bad}: {}", stderr(&out));
    }
}
