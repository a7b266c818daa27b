"""When two one-shot questions are the same one (chalicelib/answers.py): pure."""
from __future__ import annotations

import pytest

from chalicelib.answers import normal_form, request_id


@pytest.mark.parametrize("question", ["What is SQS?", "what is sqs", "  What   is\tSQS ?! ", "WHAT IS SQS.", "Ｗｈａｔ is SQS?"])
def test_case_spacing_width_and_final_punctuation_do_not_matter(question):
    assert normal_form(question) == "what is sqs"
    assert request_id(question) == request_id("What is SQS?")


@pytest.mark.parametrize("other", ["What is SNS?", "What is SQS? Briefly.", "What is S Q S?", "¿What is SQS"])
def test_different_words_are_different_questions(other):
    assert request_id(other) != request_id("What is SQS?")


def test_the_request_id_fits_the_protocol_and_hides_the_question():
    rid = request_id("a secret question " * 2000)
    assert rid.startswith("answer:") and len(rid) <= 128 and "secret" not in rid
