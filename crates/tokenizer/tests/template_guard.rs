//! The template memory guard in a long-running process (`OnStop::Abandon`, as the server and
//! the Python package use it): a runaway render returns an error instead of ending the
//! process, the template is not run again, other templates keep working, and memory stays
//! bounded. Also: deep nesting renders whatever the caller's stack.

use tokenizer::chat_guard::{self, OnStop, RenderAlloc};
use tokenizer::{render_chat, ChatMessage};

#[global_allocator]
static ALLOC: RenderAlloc = RenderAlloc;

fn render(template: &str) -> Result<String, String> {
    render_chat(template, &[ChatMessage::user("hi")], true, "<s>", "</s>")
        .map_err(|e| e.to_string())
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn runaway_templates_are_abandoned_and_the_process_goes_on() {
    chat_guard::set_on_stop(OnStop::Abandon);
    let before = rss_kib();
    let bombs = [
        "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ f('ab', 60) }}",
        "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|join(',') }}",
    ];
    for t in bombs {
        let e = render(t).unwrap_err();
        assert!(
            e.contains("template was stopped") && e.contains("MiB of memory"),
            "{e}"
        );
        // Not run again: a second try fails at once, without another parked thread.
        let e = render(t).unwrap_err();
        assert!(e.contains("stopped earlier"), "{e}");
    }
    // Each abandoned render holds at most the budget; three of them stay well under 1 GiB.
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 1 << 20, "RSS grew by {grown} KiB");
    // Other templates still render.
    assert_eq!(
        render("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}").unwrap(),
        "[user]hi"
    );
}

/// minijinja's parser allows 150 levels of nesting, each a dozen frames deep: more than a
/// small thread stack holds. Renders run on their own thread, so the caller's stack does not
/// matter.
#[test]
fn deep_nesting_renders_from_a_small_stack() {
    let deep = 70;
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(deep), ")".repeat(deep));
    let lists = format!("{{{{ {}1{}|length }}}}", "[".repeat(deep), "]".repeat(deep));
    let ifs = format!(
        "{}x{}",
        "{% if true %}".repeat(deep),
        "{% endif %}".repeat(deep)
    );
    let filters = format!("{{{{ 'a'{} }}}}", "|upper".repeat(2000));
    let too_deep = format!("{{{{ {}1{} }}}}", "(".repeat(1000), ")".repeat(1000));
    let got = std::thread::Builder::new()
        .stack_size(128 << 10)
        .spawn(move || {
            [
                render(&parens),
                render(&lists),
                render(&ifs),
                render(&filters),
                render(&too_deep),
            ]
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got[0].as_deref(), Ok("1"));
    assert_eq!(got[1].as_deref(), Ok("1"));
    assert_eq!(got[2].as_deref(), Ok("x"));
    assert_eq!(got[3].as_deref(), Ok("A"));
    let e = got[4].as_ref().unwrap_err();
    assert!(e.contains("recursion"), "{e}");
}
