//! Rendering commands with MLflow's rules.

use proptest::prelude::*;

use super::{main_entry, params};
use crate::project::{EntryPoint, ParamError, shell_quote};

fn echo_entry() -> EntryPoint {
    main_entry("entry_points:\n  main:\n    parameters: {v: string}\n    command: \"echo {v}\"")
}

fn render_v(value: &str) -> String {
    echo_entry().render_command(&params(&[("v", value)])).expect("renders")
}

fn words(command: &str) -> Vec<String> {
    shell_words::split(command).expect("rendered command splits")
}

#[test]
fn shell_quote_matches_python_shlex_quote() {
    let cases = [
        ("", "''"),
        ("abc", "abc"),
        ("a-b_c.d/e:f,g=h+i%j@k", "a-b_c.d/e:f,g=h+i%j@k"),
        ("a b", "'a b'"),
        ("it's", r#"'it'"'"'s'"#),
        ("héllo", "'héllo'"),
        ("$(id)", "'$(id)'"),
        ("~user", "'~user'"),
    ];
    for (value, quoted) in cases {
        assert_eq!(shell_quote(value), quoted, "quote({value:?})");
    }
}

#[test]
fn renders_defaults_and_given_values() {
    let main = main_entry(
        r#"
entry_points:
  main:
    parameters:
      input_dir: path
      size: {type: int, default: 128}
      lr: {type: float, default: 0.1}
    command: "python train.py --in {input_dir} --size {size} --lr {lr}"
"#,
    );
    let rendered = main.render_command(&params(&[("input_dir", "/tmp/in put"), ("size", "64")])).expect("renders");
    assert_eq!(rendered, "python train.py --in '/tmp/in put' --size 64 --lr 0.1");
    let err = main.render_command(&params(&[])).expect_err("input_dir missing");
    assert_eq!(err, ParamError::Missing { name: "input_dir".into() });
}

#[test]
fn hostile_values_stay_one_argument() {
    for value in ["x; rm -rf /", "it's \"quoted\"", "two  spaces", "$(whoami)", "`id`", "a\nb", "'", "\\", "{v}", ""] {
        let rendered = render_v(value);
        assert_eq!(words(&rendered), vec!["echo", value], "{rendered}");
    }
    assert_eq!(render_v(""), "echo ''");
    assert_eq!(render_v("x; rm -rf /"), "echo 'x; rm -rf /'");
}

#[test]
fn double_braces_are_literal() {
    let main =
        main_entry("entry_points:\n  main:\n    parameters: {x: string}\n    command: \"echo {{literal}} {x} }}{{\"");
    assert_eq!(main.render_command(&params(&[("x", "v")])).expect("renders"), "echo {literal} v }{");
}

#[test]
fn format_specs_apply_to_the_quoted_value_like_python() {
    let render = |command: &str| {
        let main = EntryPoint { name: "main".into(), command: command.into(), parameters: echo_entry().parameters };
        main.render_command(&params(&[("v", "ab")]))
    };
    let ok = |command: &str| render(command).expect(command);
    assert_eq!(ok("{v:>5}"), "   ab");
    assert_eq!(ok("{v:*^6}"), "**ab**");
    assert_eq!(ok("{v:^5}"), " ab  ");
    assert_eq!(ok("{v:.1}"), "a");
    assert_eq!(ok("{v!s:<4}|"), "ab  |");
    assert_eq!(ok("{v:05}"), "ab000");
    assert_eq!(ok("{v:}{v:s}"), "abab");
}

#[test]
fn bad_templates_are_errors() {
    let reason = |command: &str| {
        let main = EntryPoint { name: "main".into(), command: command.into(), parameters: echo_entry().parameters };
        match main.render_command(&params(&[("v", "ab")])) {
            Err(ParamError::Template { reason }) => reason,
            other => panic!("{command}: expected a template error, got {other:?}"),
        }
    };
    assert_eq!(reason("echo }"), "Single '}' encountered in format string");
    assert_eq!(reason("echo {"), "Single '{' encountered in format string");
    assert_eq!(reason("echo {v"), "expected '}' before end of string");
    assert!(reason("echo {}").contains("positional fields are not supported"));
    assert!(reason("echo {0}").contains("positional fields are not supported"));
    assert!(reason("echo {v.upper}").contains("attribute and index lookups"));
    assert!(reason("echo {v[0]}").contains("attribute and index lookups"));
    assert!(reason("echo {v!r}").contains("not supported"));
    assert_eq!(reason("echo {v!x}"), "Unknown conversion specifier x");
    assert_eq!(reason("echo {v:d}"), "Unknown format code 'd' for object of type 'str'");
    assert_eq!(reason("echo {v:+}"), "Sign not allowed in string format specifier");
    assert_eq!(reason("echo {v:=5}"), "'=' alignment not allowed in string format specifier");
    assert!(reason("echo {v:{w}}").contains("nested fields"));
}

proptest! {
    #[test]
    fn any_value_round_trips_through_shell_splitting(value in "[^\\x00]*") {
        let rendered = render_v(&value);
        prop_assert_eq!(words(&rendered), vec!["echo".to_owned(), value]);
    }

    #[test]
    fn any_ascii_value_round_trips(value in "[\\x01-\\x7f]{0,40}") {
        prop_assert_eq!(words(&render_v(&value)), vec!["echo".to_owned(), value]);
    }
}
