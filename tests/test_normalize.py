from curate.tasks.text.normalize import normalize_text


def test_nfc_composes_accents():
    assert normalize_text("cafe\u0301 re\u0301sume\u0301") == "café résumé"


def test_controls_and_zero_width_removed_tabs_and_newlines_kept():
    assert normalize_text("a\x00b\x1bc\u200bd\ufeff\x85e\tf\ng") == "abcde\tf\ng"


def test_whitespace_tidy_keeps_code_indentation():
    code = "\n\n    def f(x):  \n        return x\t\n\n\n\n\n\nprint(f(1))\r\n"
    assert normalize_text(code) == "    def f(x):\n        return x\n\n\nprint(f(1))"


def test_blank_is_empty():
    assert normalize_text(" \n\t\u200b \n") == ""


def test_clean_text_is_unchanged():
    text = "Ein schöner Tag.\n\nZweiter Absatz — mit Gedankenstrich."
    assert normalize_text(text) == text
