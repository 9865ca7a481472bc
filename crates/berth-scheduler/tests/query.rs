//! Table tests for the cluster query language, using the examples of ECS's documentation, and
//! proptest fuzzing of the parser.
// Tests may panic on a broken expectation; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use berth_scheduler::query::{self, parse, InstanceView};
use berth_scheduler::*;
use common::*;
use proptest::prelude::*;

/// A small fleet: ci-0 t2.micro us-east-1a, ci-1 t2.large us-east-1b, ci-2 m5.large us-east-1c with a
/// `stack=prod` custom attribute and a task of `service:production`, ci-3 g2.2xlarge us-east-1d.
fn fleet() -> Vec<ContainerInstance> {
    let mut a = inst(0, "us-east-1a", 1024, 2048);
    a.registered_at = query::parse_time("2023-06-01T00:00:00Z").unwrap();
    a.running_tasks_count = 0;
    let mut b = inst(1, "us-east-1b", 1024, 2048).with_attribute(ATTR_INSTANCE_TYPE, "t2.large");
    b.registered_at = query::parse_time("2024-01-15T12:00:00Z").unwrap();
    b.running_tasks_count = 3;
    let mut c = inst(2, "us-east-1c", 1024, 2048)
        .with_attribute(ATTR_INSTANCE_TYPE, "m5.large")
        .with_attribute("stack", "prod");
    c.registered_at = query::parse_time("2024-03-01").unwrap();
    c.running_tasks_count = 1;
    c.tasks.push(TaskOnInstance {
        id: "t-1".into(),
        group: "service:production".into(),
        family: "web".into(),
        resources: res(0, 0, 0),
        tcp_ports: vec![],
        udp_ports: vec![],
    });
    let mut d = inst(3, "us-east-1d", 1024, 2048).with_attribute(ATTR_INSTANCE_TYPE, "g2.2xlarge");
    d.attributes.insert("flag".into(), None);
    d.ec2_instance_id = None;
    d.registered_at = query::parse_time("2024-12-31T23:59:59Z").unwrap();
    d.running_tasks_count = 10;
    vec![a, b, c, d]
}

/// Which of ci-0..ci-3 the expression selects, as a bit string such as "1100".
fn selects(expr: &str) -> String {
    let e = parse(expr).unwrap_or_else(|err| panic!("{expr}: {err}"));
    fleet()
        .iter()
        .map(|i| {
            if e.eval(&InstanceView::new(i)) {
                '1'
            } else {
                '0'
            }
        })
        .collect()
}

#[test]
fn every_operator_and_form() {
    let table: &[(&str, &str)] = &[
        // ECS documentation examples.
        ("attribute:ecs.instance-type == t2.small", "0000"),
        ("attribute:ecs.instance-type == t2.micro", "1000"),
        ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", "1100"),
        ("attribute:ecs.instance-type =~ g2.*", "0001"),
        ("attribute:ecs.instance-type =~ t2.*", "1100"),
        ("attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone != us-east-1d", "1100"),
        ("not(attribute:ecs.instance-type =~ t2.*)", "0011"),
        ("task:group == service:production", "0010"),
        ("ec2InstanceId in ['i-0000', 'i-0002']", "1010"),
        ("registeredAt < 2024-01-01", "1000"),
        ("registeredAt >= 2024-01-15T12:00:00Z", "0111"),
        ("runningTasksCount > 2", "0101"),
        ("attribute:ecs.os-type == linux and runningTasksCount <= 1", "1010"),
        // Word forms and symbols.
        ("attribute:ecs.instance-type equals t2.micro", "1000"),
        ("attribute:ecs.instance-type not_equals t2.micro", "0111"),
        ("attribute:ecs.instance-type != t2.micro", "0111"),
        ("attribute:ecs.instance-type matches *large", "0111"),
        ("attribute:ecs.instance-type !~ *large", "1000"),
        ("attribute:ecs.instance-type not_matches t2.*", "0011"),
        ("attribute:ecs.availability-zone not_in (us-east-1a, us-east-1b)", "0011"),
        ("attribute:stack exists", "0010"),
        ("attribute:stack !exists", "1101"),
        ("attribute:flag exists", "0001"),
        ("attribute:flag == x", "0000"),
        ("attribute:stack != prod", "1101"),
        ("runningTasksCount == 3", "0100"),
        ("runningTasksCount != 3", "1011"),
        ("runningTasksCount < 1", "1000"),
        ("runningTasksCount >= 3", "0101"),
        ("registeredAt > 2024-03-01", "0001"),
        ("registeredAt <= 2024-03-01", "1110"),
        ("registeredAt == 2024-03-01", "0010"),
        ("ec2InstanceId exists", "1110"),
        ("ec2InstanceId == i-0001", "0100"),
        ("ec2InstanceId =~ i-000*", "1110"),
        ("task:group != service:production", "1101"),
        ("task:group exists", "0010"),
        ("task:group !exists", "1101"),
        ("task:group =~ service:*", "0010"),
        ("task:group in [service:production, service:other]", "0010"),
        ("task:group not_in [service:production]", "1101"),
        // Boolean structure, precedence, case-insensitive keywords.
        ("attribute:ecs.availability-zone == us-east-1a or attribute:ecs.availability-zone == us-east-1d", "1001"),
        ("attribute:ecs.availability-zone == us-east-1a || runningTasksCount == 10", "1001"),
        ("runningTasksCount > 0 && runningTasksCount < 5", "0110"),
        ("runningTasksCount == 0 or runningTasksCount == 1 and attribute:stack exists", "1010"),
        ("(runningTasksCount == 0 or runningTasksCount == 1) and attribute:stack exists", "0010"),
        ("!(runningTasksCount > 0)", "1000"),
        ("not not runningTasksCount > 0", "0111"),
        ("ATTRIBUTE:ecs.instance-type MATCHES t2.* AND RunningTasksCount > 0", "0100"),
        ("attribute:ecs.instance-type==t2.micro||attribute:ecs.instance-type==m5.large", "1010"),
        ("Attribute:ecs.availability-zone In [us-east-1a,us-east-1c]", "1010"),
        ("attribute:ecs.instance-type == \"t2.micro\"", "1000"),
    ];
    for (expr, want) in table {
        assert_eq!(selects(expr), *want, "{expr}");
    }
}

#[test]
fn parse_errors_name_position_and_expectation() {
    let table: &[(&str, usize, &str)] = &[
        ("", 0, "a subject"),
        ("attribute:ecs.instance-type", 27, "an operator"),
        ("attribute:ecs.instance-type == ", 31, "a value"),
        ("attribute:ecs.instance-type ~= t2", 28, "an operator"),
        ("color == red", 0, "a subject"),
        ("attribute:a == b and", 20, "a subject"),
        ("attribute:a == b c", 17, "'and', 'or' or end of expression"),
        ("(attribute:a == b", 17, "')'"),
        ("attribute:a in [x, y", 20, "',' or ']'"),
        ("attribute:a in x", 15, "'[' or '('"),
        ("registeredAt < yesterday", 15, "a date"),
        ("runningTasksCount > many", 20, "a number"),
        ("attribute: == x", 10, "an attribute name"),
        ("attribute:a == 'x", 15, "closing '"),
        ("attribute:a == b &", 17, "'and', 'or' or end of expression"),
        ("attribute:a = b", 12, "an operator"),
    ];
    for (expr, pos, expected) in table {
        let err = parse(expr).expect_err(expr);
        assert_eq!(err.position, *pos, "{expr}: {err}");
        assert!(err.expected.starts_with(expected), "{expr}: {err}");
        let msg = err.to_string();
        assert!(msg.starts_with("invalid expression at position"), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
    }
}

#[test]
fn display_round_trips() {
    for expr in [
        "attribute:ecs.instance-type =~ t2.* and not(attribute:ecs.availability-zone in [us-east-1a, us-east-1b])",
        "task:group == service:production or runningTasksCount >= 3 || attribute:x !exists",
        "registeredAt < 2024-01-01T00:00:00Z",
        "attribute:a == \"x y\"",
    ] {
        let e = parse(expr).unwrap();
        let again = parse(&e.to_string()).unwrap();
        assert_eq!(e, again, "{expr} -> {e}");
    }
}

#[test]
fn dates() {
    assert_eq!(query::parse_time("1970-01-01"), Some(0));
    assert_eq!(query::parse_time("1970-01-02T00:00:01Z"), Some(86_401));
    assert_eq!(
        query::parse_time("2024-02-29T10:00:00+01:00"),
        query::parse_time("2024-02-29T09:00:00Z")
    );
    assert_eq!(query::parse_time("2023-02-29"), None);
    assert_eq!(query::parse_time("2024-13-01"), None);
    assert_eq!(
        query::format_time(query::parse_time("2024-03-01T04:05:06Z").unwrap()),
        "2024-03-01T04:05:06Z"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        "{}attribute:a exists{}",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert!(parse(&deep).is_err());
    let nots = format!("{}attribute:a exists", "not ".repeat(2_000));
    assert!(parse(&nots).is_err());
    let long = vec!["attribute:a exists"; 1_000].join(" or ");
    assert_eq!(parse(&long).unwrap_err().position, 10_000);
    let many = vec!["attribute:a exists"; 400].join(" or ");
    assert!(parse(&many).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any string: an error or an AST, never a panic; an AST prints to something that parses again.
    #[test]
    fn parser_never_panics(s in "\\PC{0,80}") {
        if let Ok(e) = parse(&s) {
            prop_assert!(parse(&e.to_string()).is_ok());
        }
    }

    /// Strings built from the language's own tokens reach deeper into the parser.
    #[test]
    fn parser_never_panics_on_token_soup(tokens in prop::collection::vec(prop::sample::select(vec![
        "attribute:ecs.instance-type", "task:group", "registeredAt", "runningTasksCount", "ec2InstanceId",
        "==", "!=", ">", ">=", "<", "<=", "=~", "!~", "!", "exists", "in", "not_in", "and", "or", "not",
        "&&", "||", "(", ")", "[", "]", ",", "t2.*", "2024-01-01", "3", "'q", "\"x\"", "matches",
    ]), 0..24)) {
        let s = tokens.join(" ");
        if let Ok(e) = parse(&s) {
            let view = fleet();
            for i in &view {
                let _ = e.eval(&InstanceView::new(i));
            }
        }
    }
}
