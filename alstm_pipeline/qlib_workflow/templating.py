"""qrun's template step, reduced to what Qlib's workflow files use: ``{{ NAME }}``.

Qlib's ``qrun`` renders the whole file as a Jinja2 template with the environment as its
variables, so a file can say ``provider_uri: "{{ DATA_DIR }}"``. A full Jinja2 template can
also reach Python (``lipsum.__globals__``, ``''.__class__.__mro__``) and run commands, so
the parsed template is inspected *before* anything is rendered: the only expressions
allowed are a variable name and ``{{ NAME | default("text") }}``. Anything else (attribute
or item access, calls, loops, conditions, other filters, literals) is refused with one
error naming every offending line and construct — never a rendered value. What passes is
rendered by an immutable sandboxed environment with no globals and no filters besides
``default``, and every variable must be set (Qlib would insert empty text).
"""

from __future__ import annotations

from collections.abc import Mapping

MARKS = ("{{", "{%", "{#")
# Words for what a refused node does, so the error says it without quoting the template.
_REFUSED = {
    "Getattr": "attribute access", "Getitem": "item access", "Call": "a call", "For": "a loop",
    "If": "a condition", "CondExpr": "a condition", "Macro": "a macro", "CallBlock": "a call block",
    "Assign": "an assignment", "AssignBlock": "an assignment", "Import": "an import", "FromImport": "an import",
    "Include": "an include", "Extends": "an extends", "Block": "a block", "FilterBlock": "a filter block",
    "With": "a with block", "Test": "a test", "Const": "a literal", "TemplateData": "text",
}


def _environment():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    # Nothing reachable by name but the file's variables: no lipsum, cycler, range, namespace...
    environment.globals.clear()
    environment.tests.clear()
    environment.filters = {"default": environment.filters["default"]}
    return environment


def _describe(node) -> str:
    kind = type(node).__name__
    if kind == "Filter":
        return f"the filter |{node.name}"
    if kind in ("BinExpr", "UnaryExpr") or kind in ("Add", "Sub", "Mul", "Div", "FloorDiv", "Mod", "Pow",
                                                     "Concat", "Compare", "And", "Or", "Not", "Neg", "Pos"):
        return "an operator"
    return _REFUSED.get(kind, f"a {kind} expression")


def _allowed_expression(node, names: set[str], defaults: set[str]) -> list:
    """The offending nodes of one ``{{ ... }}`` expression (empty when it is allowed)."""
    from jinja2 import nodes

    if isinstance(node, nodes.Name) and node.ctx == "load":
        names.add(node.name)
        return []
    if (isinstance(node, nodes.Filter) and node.name == "default" and isinstance(node.node, nodes.Name)
            and len(node.args) == 1 and isinstance(node.args[0], nodes.Const) and isinstance(node.args[0].value, str)
            and not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None):
        names.add(node.node.name)
        defaults.add(node.node.name)
        return []
    return [node]


def check_template(text: str) -> tuple[list[str], set[str], set[str]]:
    """(problems, variable names, names with a default) of a template, without rendering it."""
    import jinja2
    from jinja2 import nodes

    try:
        tree = _environment().parse(text)
    except jinja2.TemplateSyntaxError as error:
        return [f"template syntax (line {error.lineno}): {error.message}"], set(), set()
    names: set[str] = set()
    defaults: set[str] = set()
    refused: dict[int, list[str]] = {}
    for statement in tree.body:
        if isinstance(statement, nodes.Output):
            bad = [n for child in statement.nodes if not isinstance(child, nodes.TemplateData)
                   for n in _allowed_expression(child, names, defaults)]
        else:
            bad = [statement]
        for node in bad:
            # The construct itself and everything it is built from (a call of an attribute of
            # an item...), each named once per line; names and literals inside add nothing.
            inner = [n for n in node.find_all(nodes.Node)
                     if not isinstance(n, (nodes.Name, nodes.Const, nodes.Keyword, nodes.Pair, nodes.Operand, nodes.TemplateData,
                                       nodes.Output))]
            for part in [node, *inner]:
                what = _describe(part)
                line = refused.setdefault(part.lineno or node.lineno or 0, [])
                if what not in line:
                    line.append(what)
    problems = [f"template line {line}: {', '.join(kinds)} — only {{{{ NAME }}}} (an environment variable, "
                f"optionally {{{{ NAME | default(\"text\") }}}}) is allowed; nothing was rendered"
                for line, kinds in sorted(refused.items())]
    return problems, names, defaults


def render_template(text: str, environ: Mapping[str, str], problems: list[str]) -> str:
    """The file with its ``{{ NAME }}`` variables filled from ``environ``; on any problem
    the text is returned unrendered and ``problems`` says why (see the module doc)."""
    if not any(mark in text for mark in MARKS):
        return text  # nothing Jinja2 would change
    found, names, defaults = check_template(text)
    missing = sorted(name for name in names if name not in environ and name not in defaults)
    found += [f"template variable {{{{ {name} }}}} is not set in the environment (Qlib would insert empty text)"
              for name in missing]
    if found:
        problems.extend(found)
        return text
    return _environment().from_string(text).render({name: environ[name] for name in names if name in environ})
