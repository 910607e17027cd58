//! The command line's refusals of malformed input: each fails at once, with
//! exit 2 and a line saying what is accepted, before any server is reached.

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
