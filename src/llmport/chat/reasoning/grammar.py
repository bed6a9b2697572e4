"""Grammars that let a model reason first: the ``<think>...</think>`` block, then the
constrained answer (a tool call, a JSON schema), so the constraint applies only after the
reasoning ends."""

from __future__ import annotations

from llmport.chat.reasoning.think import END, START, ReasoningParser


def after_reasoning(grammar: str, parser: ReasoningParser) -> str:
    """``grammar`` (whose start rule is ``root``) behind a reasoning block."""
    if not grammar.startswith("root ::="):
        raise ValueError("a grammar must start with its root rule")
    opening = f'"{START}"' + ("?" if parser.opens_in_reasoning else "")
    answer = "answer ::=" + grammar[len("root ::=") :]
    return f"root ::= {opening} think-0 [ \\n]{{0,4}} answer\n{_until(END)}{answer}"


def _until(tag: str) -> str:
    """Rules ``think-0`` ... that take any text up to and including the first ``tag``:
    ``think-K`` has matched ``tag[:K]``. Sound because ``tag[0]`` does not recur in it."""
    first = tag[0]
    rules = []
    for k, char in enumerate(tag):
        step = f'"{char}"' + (f" think-{k + 1}" if k + 1 < len(tag) else "")
        if k == 0:
            rules.append(f"think-0 ::= {step} | [^{first}] think-0\n")
        else:
            rules.append(f'think-{k} ::= {step} | "{first}" think-1 | [^{char}{first}] think-0\n')
    return "".join(rules)
