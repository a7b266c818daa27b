"""The analysis step's reading of the agent's answer (pure)."""
from __future__ import annotations

from chalicelib.documents.analysis import MAX_SUMMARY_CHARS, analysis_prompt, keywords, parse_analysis

TEXT = "Glaciers retreat. Glaciers melt in summer; meltwater feeds rivers. Rivers carry sediment from glaciers."


def test_a_json_answer_gives_its_summary_and_topics():
    answer = 'Here it is: {"summary": "Why glaciers retreat.", "topics": ["glaciers", " meltwater ", ""]} Done.'
    assert parse_analysis(answer, TEXT) == {"summary": "Why glaciers retreat.", "topics": ["glaciers", "meltwater"]}


def test_a_prose_answer_is_the_summary_and_the_topics_are_the_documents_own_words():
    analysis = parse_analysis("The document  is about\nglaciers.", TEXT)
    assert analysis == {"summary": "The document is about glaciers.", "topics": ["glaciers", "rivers", "retreat",
                                                                               "melt", "summer"]}


def test_a_long_summary_is_cut_at_a_word():
    summary = parse_analysis("word " * 500, TEXT)["summary"]
    assert len(summary) <= MAX_SUMMARY_CHARS + 1 and summary.endswith("word…")


def test_keywords_skip_stopwords_and_short_words_and_break_ties_by_first_appearance():
    assert keywords("which which which tide tide moon moon the a an of", 3) == ["tide", "moon"]
    assert keywords("") == []


def test_the_prompt_names_the_file_as_json():
    assert '"q\\"3.pdf"' in analysis_prompt('q"3.pdf')


def test_an_answer_that_echoes_the_prompt_is_not_taken_for_the_json_asked_for():
    echoed = "You said: " + analysis_prompt("notes.md")
    assert parse_analysis(echoed, TEXT)["topics"] == keywords(TEXT)
