//! Checking parameters against an entry point's declarations.

use super::{main_entry, params};
use crate::project::{ParamError, ParamType};

const YAML: &str = r#"
entry_points:
  main:
    parameters:
      input_dir: path
      output_dir: path
      size: {type: int, default: 128}
      alpha: float
      source: {type: uri, default: "s3://bucket/raw"}
      label: {type: string, default: ""}
    command: "python run.py {input_dir} {output_dir} --size {size} --alpha {alpha} --src {source}"
"#;

#[test]
fn applies_defaults_and_leaves_filled_names_absent() {
    let main = main_entry(YAML);
    let filled = main.filled_parameters();
    let values = main.check_parameters(&params(&[("alpha", "0.5")]), &filled).expect("valid");
    assert_eq!(values, params(&[("alpha", "0.5"), ("label", ""), ("size", "128"), ("source", "s3://bucket/raw")]));
}

#[test]
fn undeclared_parameters_are_passed_after_the_command_in_the_order_given() {
    let main = main_entry("entry_points:\n  main:\n    parameters: {a: int}\n    command: run {a}");
    let given = params(&[("a", "1"), ("zeta", "z z"), ("alpha", "it's")]);
    assert!(main.check_parameters(&given, &[]).is_ok(), "undeclared names are not refused");
    let order = ["zeta".to_string(), "a".to_string(), "alpha".to_string()];
    assert_eq!(main.render_command_in_order(&given, &order).unwrap(), "run 1 --zeta 'z z' --alpha 'it'\"'\"'s'");
    assert_eq!(
        main.render_command(&given).unwrap(),
        "run 1 --alpha 'it'\"'\"'s' --zeta 'z z'",
        "by name without an order"
    );
}

#[test]
fn missing_parameter_is_an_error_unless_filled() {
    let main = main_entry(YAML);
    let err = main.check_parameters(&params(&[]), &["input_dir", "output_dir"]).expect_err("alpha missing");
    assert_eq!(err.to_string(), "parameter 'alpha' is required (declared without a default) but was not given");
    let err = main.check_parameters(&params(&[("alpha", "1")]), &["output_dir"]).expect_err("input_dir missing");
    assert_eq!(err, ParamError::Missing { name: "input_dir".into() });
}

#[test]
fn mistyped_values_name_parameter_type_and_value() {
    let main = main_entry(YAML);
    let filled = main.filled_parameters();
    let check = |pairs: &[(&str, &str)]| main.check_parameters(&params(pairs), &filled);
    let err = check(&[("alpha", "1"), ("size", "12.5")]).expect_err("int");
    assert_eq!(
        err,
        ParamError::BadValue {
            name: "size".into(),
            kind: ParamType::Int,
            value: "12.5".into(),
            reason: "not an integer".into()
        }
    );
    assert_eq!(err.to_string(), "parameter 'size': value '12.5' is not a valid int: not an integer");
    let err = check(&[("alpha", "fast")]).expect_err("float");
    assert_eq!(err.to_string(), "parameter 'alpha': value 'fast' is not a valid float: not a number");
    let err = check(&[("alpha", "1"), ("source", "")]).expect_err("empty uri");
    assert_eq!(err.to_string(), "parameter 'source': value '' is not a valid uri: must not be empty");
}

#[test]
fn type_rules() {
    let ok = |kind: ParamType, value: &str| kind.check(value).is_ok();
    for v in ["0", "-3", "+7", " 42 ", "123456789012345678901234567890"] {
        assert!(ok(ParamType::Int, v), "int {v:?}");
    }
    for v in ["", "1.0", "1e3", "0x10", "one", "1_000"] {
        assert!(!ok(ParamType::Int, v), "int {v:?}");
    }
    for v in ["3", "-0.5", "1e-3", ".5", "5.", "inf", "nan"] {
        assert!(ok(ParamType::Float, v), "float {v:?}");
    }
    for v in ["", "abc", "1,5", "0.1.2"] {
        assert!(!ok(ParamType::Float, v), "float {v:?}");
    }
    assert!(ok(ParamType::Path, "data/x"));
    assert!(!ok(ParamType::Path, ""));
    for v in
        ["s3://bucket/x", "file:///data", "runs:/abc/model", "mlflow-artifacts:/1/2", "C:\\data", "s3://bad host/x"]
    {
        assert!(ok(ParamType::Uri, v), "uri {v:?}");
    }
    for v in ["", "http://[::1", "./data", "/abs/path", "1a:x"] {
        assert!(!ok(ParamType::Uri, v), "uri {v:?}");
    }
    assert!(!ok(ParamType::String, "nul\0byte"));
    assert!(ok(ParamType::String, ""));
}

#[test]
fn command_naming_an_undeclared_parameter_is_an_error() {
    let main = main_entry("entry_points:\n  main:\n    parameters: {a: int}\n    command: run {a} {b}");
    let err = main.check_parameters(&params(&[("a", "1")]), &[]).expect_err("undeclared");
    assert_eq!(err, ParamError::Undeclared { name: "b".into() });
    assert_eq!(err.to_string(), "the command uses {b} but the entry point declares no parameter 'b'");
}
