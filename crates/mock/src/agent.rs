//! The `agent` behaviour: a model that drives an agent client's shell tool.
//!
//! With tools offered and no tool result yet, it calls the client's shell tool (Claude Code's
//! `Bash`, Codex's `exec_command` or `shell`, or any tool whose schema has a `command` or
//! `cmd` property) with the command quoted in backticks in the last user message. With the
//! conversation ending in tool results, it answers with text quoting them. The format
//! handlers render the call with their own ids and streaming, like any other tool call.

use serde_json::{Map, Value};

use crate::gen::{dummy, ToolMode, ToolSpec};

/// Most characters of a tool result quoted in the answer.
pub(crate) const MAX_QUOTE_CHARS: usize = 2000;

/// Sections that agent clients wrap around (or add to) the user's own words; commands
/// quoted inside them are not the user's request.
const WRAPPERS: [&str; 3] = [
    "system-reminder",
    "environment_context",
    "user_instructions",
];

/// The shell tool call the agent makes: the tool's name and its input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ShellCall {
    pub name: String,
    pub args: Value,
}

/// The call for this request, or `None` when the agent should fall back to the model's
/// ordinary behaviour (no command in backticks, no shell-like tool, or tool use ruled out).
pub(crate) fn shell_call(
    tools: &[ToolSpec<'_>],
    mode: ToolMode<'_>,
    last_user: &str,
) -> Option<ShellCall> {
    if mode == ToolMode::None {
        return None;
    }
    let command = command_in(last_user)?;
    // A forced tool is the only candidate.
    let forced: Vec<ToolSpec<'_>>;
    let tools = match mode {
        ToolMode::Named(name) => {
            forced = tools.iter().filter(|t| t.name == name).copied().collect();
            &forced[..]
        }
        _ => tools,
    };
    let (tool, shape) = shell_tool(tools)?;
    Some(ShellCall {
        name: tool.name.to_owned(),
        args: arguments(tool, &shape, &command),
    })
}

/// The answer to a conversation ending in tool results: the results quoted verbatim
/// (trimmed, at most [`MAX_QUOTE_CHARS`] characters).
pub(crate) fn result_answer(results: &str, error: bool) -> String {
    let trimmed = results.trim();
    let quoted: String = trimmed.chars().take(MAX_QUOTE_CHARS).collect();
    let cut = if quoted.len() < trimmed.len() {
        " …"
    } else {
        ""
    };
    match (error, quoted.is_empty()) {
        (false, true) => "The command printed nothing.".to_owned(),
        (true, true) => "The command failed without output.".to_owned(),
        (false, false) => format!("The command printed: {quoted}{cut}"),
        (true, false) => format!("The command failed: {quoted}{cut}"),
    }
}

/// The first command quoted in backticks in `text`, outside the clients' wrapper sections:
/// an inline span (`` `cmd` `` or ``` ``cmd`` ```) gives its trimmed content, a fenced block
/// (three or more backticks) the first non-empty line of its content.
pub(crate) fn command_in(text: &str) -> Option<String> {
    let mut text = text.to_owned();
    for tag in WRAPPERS {
        text = strip_section(&text, tag);
    }
    first_backticked(&text)
}

fn first_backticked(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(start) = rest.find('`') {
        let after = &rest[start..];
        let run = after.bytes().take_while(|&b| b == b'`').count();
        let body = &after[run..];
        // The closing run: the same number of backticks, not part of a longer run.
        let close = find_run(body, run);
        let content = match close {
            Some(end) => &body[..end],
            None if run >= 3 => body,
            None => {
                rest = body;
                continue;
            }
        };
        let found = if run >= 3 {
            fenced_command(content)
        } else {
            Some(content.trim()).filter(|c| !c.is_empty() && !c.contains('\n'))
        };
        if let Some(c) = found {
            return Some(c.to_owned());
        }
        rest = match close {
            Some(end) => &body[end + run..],
            None => "",
        };
    }
    None
}

/// Offset in `s` of a run of exactly `n` backticks.
fn find_run(s: &str, n: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            let len = bytes[i..].iter().take_while(|&&b| b == b'`').count();
            if len == n {
                return Some(i);
            }
            i += len;
        } else {
            i += 1;
        }
    }
    None
}

/// A fence's command: on one line (```` ```ls``` ````) its content, else the first
/// non-empty line after the opening line (which holds the language tag).
fn fenced_command(content: &str) -> Option<&str> {
    match content.split_once('\n') {
        None => Some(content.trim()).filter(|c| !c.is_empty()),
        Some((_info, body)) => body.lines().map(str::trim).find(|l| !l.is_empty()),
    }
}

/// `text` without its `<tag>…</tag>` sections.
fn strip_section(text: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        out.push_str(&rest[..start]);
        match rest[start..].find(&close) {
            Some(end) => rest = &rest[start + end + close.len()..],
            None => {
                rest = "";
            }
        }
        out.push('\n');
    }
    out.push_str(rest);
    out
}

/// How a shell tool takes its command.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    key: &'static str,
    array: bool,
}

/// The first offered tool named like a shell tool, else the first whose schema has a
/// `command` or `cmd` property.
fn shell_tool<'t, 'a>(tools: &'t [ToolSpec<'a>]) -> Option<(&'t ToolSpec<'a>, Shape)> {
    let by_name = tools.iter().find_map(|t| {
        let default = match t.name {
            n if n.eq_ignore_ascii_case("bash") => ("command", false),
            "exec_command" => ("cmd", false),
            "shell" => ("command", true),
            _ => return None,
        };
        Some((
            t,
            shape_of(t.schema).unwrap_or(Shape {
                key: default.0,
                array: default.1,
            }),
        ))
    });
    by_name.or_else(|| {
        tools
            .iter()
            .find_map(|t| shape_of(t.schema).map(|shape| (t, shape)))
    })
}

/// The command property of a schema and whether it takes an array (`["bash", "-lc", cmd]`).
fn shape_of(schema: Option<&Value>) -> Option<Shape> {
    let props = schema?.get("properties")?.as_object()?;
    let (key, prop) = ["command", "cmd"]
        .into_iter()
        .find_map(|k| props.get(k).map(|p| (k, p)))?;
    Some(Shape {
        key,
        array: takes_array(prop),
    })
}

fn takes_array(prop: &Value) -> bool {
    let is_array = |t: &Value| t.as_str().is_some_and(|s| s.eq_ignore_ascii_case("array"));
    match prop.get("type") {
        Some(Value::Array(types)) => {
            types.iter().any(is_array) && !types.iter().any(|t| t == "string")
        }
        Some(t) => is_array(t),
        None => ["anyOf", "oneOf"].iter().any(|k| {
            prop.get(*k)
                .and_then(Value::as_array)
                .and_then(|alts| alts.first())
                .is_some_and(takes_array)
        }),
    }
}

/// The tool's input: the command, plus dummy values for any other required property.
fn arguments(tool: &ToolSpec<'_>, shape: &Shape, command: &str) -> Value {
    let mut args = Map::new();
    if let Some(schema) = tool.schema {
        let required = schema.get("required").and_then(Value::as_array);
        let props = schema.get("properties").and_then(Value::as_object);
        for name in required.into_iter().flatten().filter_map(Value::as_str) {
            if name == shape.key {
                continue;
            }
            if let Some(prop) = props.and_then(|p| p.get(name)) {
                args.insert(name.to_owned(), dummy(prop, schema, name, 1, false));
            }
        }
    }
    let value = if shape.array {
        Value::from(vec!["bash", "-lc", command])
    } else {
        Value::from(command)
    };
    args.insert(shape.key.to_owned(), value);
    Value::Object(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool<'a>(name: &'a str, schema: &'a Value) -> ToolSpec<'a> {
        ToolSpec {
            name,
            schema: Some(schema),
        }
    }

    #[test]
    fn inline_backticks() {
        assert_eq!(
            command_in("Run `echo hello-42` and tell me the output").as_deref(),
            Some("echo hello-42")
        );
        assert_eq!(
            command_in("Run `ls -la` then `pwd`").as_deref(),
            Some("ls -la")
        );
        assert_eq!(
            command_in("Try ``echo `date` `` now").as_deref(),
            Some("echo `date`")
        );
        // Empty spans are skipped; an unclosed one is not a command.
        assert_eq!(
            command_in("`` and `  ` then `uname`").as_deref(),
            Some("uname")
        );
        assert_eq!(command_in("no command here"), None);
        assert_eq!(command_in("unclosed `echo x"), None);
    }

    #[test]
    fn fenced_blocks_give_their_first_line() {
        let text = "Please run this:\n```bash\n\necho one\necho two\n```\nThanks";
        assert_eq!(command_in(text).as_deref(), Some("echo one"));
        assert_eq!(command_in("```sh\nls\n```").as_deref(), Some("ls"));
        assert_eq!(
            command_in("Run ```uname -a``` now").as_deref(),
            Some("uname -a")
        );
        // An unclosed fence runs to the end of the text.
        assert_eq!(command_in("```\ncat x\n").as_deref(), Some("cat x"));
        // A fence before an inline span wins, and the other way round.
        assert_eq!(
            command_in("```\nfirst\n``` then `second`").as_deref(),
            Some("first")
        );
        assert_eq!(
            command_in("`first` then ```\nsecond\n```").as_deref(),
            Some("first")
        );
    }

    #[test]
    fn client_wrappers_are_ignored() {
        let text = "<system-reminder>Use `rg` not `grep`.</system-reminder>Run `echo hi`\
                    <system-reminder>Todo: `x`</system-reminder>";
        assert_eq!(command_in(text).as_deref(), Some("echo hi"));
        let text = "<environment_context>cwd `/tmp`</environment_context>\nRun `pwd`";
        assert_eq!(command_in(text).as_deref(), Some("pwd"));
        assert_eq!(command_in("<system-reminder>`x`</system-reminder>"), None);
    }

    #[test]
    fn tools_are_picked_by_name_then_schema() {
        let read = json!({"type": "object", "properties": {"file_path": {"type": "string"}}});
        let bash = json!({"type": "object", "properties": {
            "command": {"type": "string"}, "timeout": {"type": "number"},
            "description": {"type": "string"}}, "required": ["command"]});
        let mcp = json!({"type": "object", "properties": {"command": {"type": "string"}}});
        let tools = [tool("Read", &read), tool("run", &mcp), tool("Bash", &bash)];
        let call = shell_call(&tools, ToolMode::Auto, "Run `echo hello-42`").unwrap();
        assert_eq!(call.name, "Bash");
        assert_eq!(call.args, json!({"command": "echo hello-42"}));

        // By schema when no tool has a shell's name: the first with `command` or `cmd`.
        let cmd = json!({"type": "object", "properties": {"cmd": {"type": "string"}}});
        let tools = [tool("Read", &read), tool("runner", &cmd), tool("run", &mcp)];
        let call = shell_call(&tools, ToolMode::Auto, "`ls`").unwrap();
        assert_eq!(
            call,
            ShellCall {
                name: "runner".into(),
                args: json!({"cmd": "ls"})
            }
        );

        // No shell-like tool, no command, or tool use ruled out: fall back.
        assert_eq!(
            shell_call(&[tool("Read", &read)], ToolMode::Auto, "`ls`"),
            None
        );
        assert_eq!(
            shell_call(&[tool("Bash", &bash)], ToolMode::Auto, "list files"),
            None
        );
        assert_eq!(
            shell_call(&[tool("Bash", &bash)], ToolMode::None, "`ls`"),
            None
        );
        assert_eq!(
            shell_call(&[tool("Bash", &bash)], ToolMode::Named("Read"), "`ls`"),
            None
        );
        assert!(shell_call(&[tool("Bash", &bash)], ToolMode::Named("Bash"), "`ls`").is_some());
        let forced = [tool("Bash", &bash), tool("run", &mcp)];
        let call = shell_call(&forced, ToolMode::Named("run"), "`ls`").unwrap();
        assert_eq!(call.name, "run");
        assert!(shell_call(&[tool("Bash", &bash)], ToolMode::Required, "`ls`").is_some());
    }

    #[test]
    fn codex_tools_string_and_array() {
        let exec = json!({"type": "object", "properties": {
            "cmd": {"type": "string"}, "workdir": {"type": "string"},
            "yield_time_ms": {"type": "number"}}, "required": ["cmd"]});
        let call = shell_call(&[tool("exec_command", &exec)], ToolMode::Auto, "`echo 1`").unwrap();
        assert_eq!(call.args, json!({"cmd": "echo 1"}));

        let shell = json!({"type": "object", "properties": {
            "command": {"type": "array", "items": {"type": "string"}},
            "workdir": {"type": "string"}}, "required": ["command"]});
        let call = shell_call(&[tool("shell", &shell)], ToolMode::Auto, "`echo 1`").unwrap();
        assert_eq!(call.args, json!({"command": ["bash", "-lc", "echo 1"]}));

        // Without a schema the name decides; Gemini's upper-case types are understood.
        let bare = [ToolSpec {
            name: "shell",
            schema: None,
        }];
        let call = shell_call(&bare, ToolMode::Auto, "`echo 1`").unwrap();
        assert_eq!(call.args, json!({"command": ["bash", "-lc", "echo 1"]}));
        let bare = [ToolSpec {
            name: "exec_command",
            schema: None,
        }];
        let call = shell_call(&bare, ToolMode::Auto, "`echo 1`").unwrap();
        assert_eq!(call.args, json!({"cmd": "echo 1"}));
        let gemini = json!({"type": "OBJECT", "properties": {
            "command": {"type": "ARRAY", "items": {"type": "STRING"}}}});
        let call = shell_call(&[tool("run", &gemini)], ToolMode::Auto, "`ls`").unwrap();
        assert_eq!(call.args, json!({"command": ["bash", "-lc", "ls"]}));
        let nullable = json!({"type": "object", "properties": {
            "command": {"type": ["string", "null"]}}});
        let call = shell_call(&[tool("run", &nullable)], ToolMode::Auto, "`ls`").unwrap();
        assert_eq!(call.args, json!({"command": "ls"}));
    }

    #[test]
    fn other_required_properties_get_dummies() {
        let schema = json!({"type": "object", "properties": {
            "command": {"type": "string"}, "reason": {"type": "string"},
            "timeout": {"type": "integer"}}, "required": ["command", "reason"]});
        let call = shell_call(&[tool("Bash", &schema)], ToolMode::Auto, "`ls`").unwrap();
        assert_eq!(call.args, json!({"command": "ls", "reason": "mock-reason"}));
    }

    #[test]
    fn tool_result_answers_quote_it() {
        assert_eq!(
            result_answer("hello-42\n", false),
            "The command printed: hello-42"
        );
        assert_eq!(
            result_answer("  line one\nline two  ", false),
            "The command printed: line one\nline two"
        );
        assert_eq!(result_answer(" \n", false), "The command printed nothing.");
        assert_eq!(
            result_answer("command not found: frob", true),
            "The command failed: command not found: frob"
        );
        let long = "é".repeat(MAX_QUOTE_CHARS + 10);
        let answer = result_answer(&long, false);
        assert_eq!(answer.matches('é').count(), MAX_QUOTE_CHARS);
        assert!(answer.ends_with(" …"));
    }
}
