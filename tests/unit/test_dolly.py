"""Row transforms: Dolly row -> validated chat messages (small dict fixtures)."""

from components.common.dolly import dedup_key, row_problem, to_messages, user_content

ROW = {"instruction": "Who wrote it?", "context": "It was written by Ann.", "response": "Ann.",
       "category": "closed_qa"}


def test_messages_include_context_under_a_heading():
    msgs = to_messages(ROW)
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[0]["content"] == "Who wrote it?\n\nContext:\nIt was written by Ann."
    assert msgs[1]["content"] == "Ann."


def test_no_context_means_instruction_only_and_system_prompt_first():
    msgs = to_messages({**ROW, "context": "  "}, system_prompt="Be brief.")
    assert msgs[0] == {"role": "system", "content": "Be brief."}
    assert msgs[1]["content"] == "Who wrote it?"


def test_whitespace_is_trimmed():
    assert user_content("  Q?\n", "\n C \n") == "Q?\n\nContext:\nC"


def test_valid_row_has_no_problem():
    assert row_problem(ROW) is None


def test_row_problems_are_named():
    assert row_problem([1, 2]) == "not a JSON object (got list)"
    assert row_problem({"instruction": "x"}) == "missing fields context, response, category"
    assert row_problem({**ROW, "response": 3}) == "non-string response (int)"
    assert row_problem({**ROW, "instruction": " "}) == "empty instruction"
    assert row_problem({**ROW, "context": None}) == "non-string context (NoneType)"


def test_dedup_key_ignores_surrounding_whitespace_only():
    assert dedup_key(ROW) == dedup_key({k: f" {v} " for k, v in ROW.items()})
    assert dedup_key(ROW) != dedup_key({**ROW, "response": "Bob."})
