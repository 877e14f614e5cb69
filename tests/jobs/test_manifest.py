"""`read_manifest` on manifests as people really write them: spreadsheet CSV exports (byte-order marks,
`;` and tab separators, decimal commas, UTF-16, blank rows) and numbers that must be refused (NaN, inf,
negative weights, fractional seeds). read_manifest opens no images, so the manifests name files that
need not exist."""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path

import pytest

from jaxstyle.jobs.manifest import read_manifest


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    """The manifest ``name`` holding ``content`` byte for byte (str as UTF-8, line ends as written)."""
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def read(path: Path):
    return read_manifest(path, path.parent / "out")


def refusal(path: Path) -> str:
    """The one-line ValueError message read_manifest gives for ``path``."""
    with pytest.raises(ValueError) as info:
        read(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


# --- spreadsheet exports -------------------------------------------------------------------------------------------


def test_utf8_byte_order_mark(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark, which used to end up in the first column's name."""
    [pair] = read(write(tmp_path, "m.csv", "\ufeffcontent,style\r\na.png,b.png\r\n"))
    assert (pair.content, pair.style) == (tmp_path / "a.png", tmp_path / "b.png")


def test_semicolon_file_from_a_european_excel(tmp_path):
    """Excel in a German or French locale: mark, CRLF, `;` between cells, decimal commas, trailing `;;;` rows."""
    path = write(tmp_path, "m.csv", "\ufeffContent;Style;Content Weight;style_weight;Seed;style_blend\r\n"
                                    "a.png;x.png|y.png;0,5;1e-3;7;0,75|0,25\r\n"
                                    ";;;;;\r\n;;;;;\r\n")
    [pair] = read(path)
    assert pair.styles == (tmp_path / "x.png", tmp_path / "y.png")
    assert (pair.content_weight, pair.style_weight, pair.seed, pair.style_blend) == (0.5, 1e-3, 7, (0.75, 0.25))


def test_excel_sep_line_is_skipped_and_lines_still_count(tmp_path):
    """Excel may write (and honours) a first line ``sep=;``; errors still name the file's own line numbers."""
    [pair] = read(write(tmp_path, "m.csv", "sep=;\r\ncontent;style\r\na.png;b.png\r\n"))
    assert pair.content == tmp_path / "a.png"
    message = refusal(write(tmp_path, "bad.csv", "sep=;\ncontent;style;seed\na.png;b.png;x\n"))
    assert message.endswith("bad.csv:3: seed 'x' is not an integer")


def test_tab_separated(tmp_path):
    [pair] = read(write(tmp_path, "m.csv", "content\tstyle\tcontent_weight\na, 1.png\tb.png\t2\n"))
    assert (pair.content, pair.content_weight) == (tmp_path / "a, 1.png", 2.0)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_unicode_text_export_is_decoded(tmp_path, encoding):
    """Excel's "Unicode text" is UTF-16 with a byte-order mark, tab-separated, CRLF."""
    text = "content\tstyle\r\ncafé.png\tb.png\r\n"
    data = text.encode(encoding) if encoding != "utf-16-be" else codecs.BOM_UTF16_BE + text.encode(encoding)
    [pair] = read(write(tmp_path, "m.csv", data))
    assert pair.content == tmp_path / "café.png"


def test_utf16_without_a_mark_is_refused(tmp_path):
    message = refusal(write(tmp_path, "m.csv", "content,style\na.png,b.png\n".encode("utf-16-le")))
    assert "m.csv:1: NUL characters" in message and "UTF-8" in message


@pytest.mark.parametrize("encoding", ["cp1252", "mac_roman"])
def test_legacy_encodings_are_refused_naming_the_line(tmp_path, encoding):
    """Excel's plain "CSV" is the ANSI code page (or Mac Roman): refused at the line, not guessed at."""
    data = "content,style\na.png,b.png\r\ncafé.png,b.png\r\n".encode(encoding)
    assert "m.csv:3: not UTF-8 text" in refusal(write(tmp_path, "m.csv", data))


def test_header_names_in_any_case_and_spacing_and_cells_stripped(tmp_path):
    path = write(tmp_path, "m.csv", " Content , STYLE ,Output, content weight \n a.png , b.png , o.png , 2 \n")
    [pair] = read(path)
    assert (pair.content, pair.style) == (tmp_path / "a.png", tmp_path / "b.png")
    assert (pair.output, pair.content_weight) == (tmp_path / "out" / "o.png", 2.0)


def test_blank_lines_and_empty_rows_are_skipped(tmp_path):
    pairs = read(write(tmp_path, "m.csv", "\ncontent,style\n\n,\n , ,,\na.png,b.png\n\n,,,\n"))
    assert [p.content for p in pairs] == [tmp_path / "a.png"]


def test_errors_name_the_physical_line(tmp_path):
    """Blank lines, CR line ends and quoted cells that span lines all count, as an editor numbers them."""
    for name, text in [("blank.csv", "content,style,seed\n\na.png,b.png,1\n\nc.png,d.png,x\n"),
                       ("cr.csv", "content,style,seed\r\ra.png,b.png,1\r\rc.png,d.png,x\r"),
                       ("quoted.csv", 'content,style,seed\n"two\nlines.png",b.png,1\n\nc.png,d.png,x\n')]:
        assert refusal(write(tmp_path, name, text)).endswith(f"{name}:5: seed 'x' is not an integer")


def test_quoted_fields(tmp_path):
    """Spreadsheets quote cells holding the separator or a quote (doubled), sometimes after a space."""
    [pair] = read(write(tmp_path, "m.csv", 'content,style,output\n"my, photo.png", "say ""hi"".png" ,"o;1.png"\n'))
    assert (pair.content, pair.style) == (tmp_path / "my, photo.png", tmp_path / 'say "hi".png')
    assert pair.output == tmp_path / "out" / "o;1.png"


def test_jsonl_with_mark_and_crlf(tmp_path):
    lines = ['{"content": "a.png", "style": "x.png"}', "", '{"content": "b.png", "style": "x.png"}', ""]
    pairs = read(write(tmp_path, "m.jsonl", "\ufeff" + "\r\n".join(lines)))
    assert [p.content for p in pairs] == [tmp_path / "a.png", tmp_path / "b.png"]


def test_decimal_comma_only_in_semicolon_files(tmp_path):
    """In a `,` or tab file "0,5" could be 0.5 or 5 thousand-and-odd: refused, with a hint; a `,`-file's
    style_blend keeps reading "1,3" as two weights."""
    for name, text in [("comma.csv", 'content,style,content_weight\na.png,b.png,"0,5"\n'),
                       ("tab.csv", "content\tstyle\tcontent_weight\na.png\tb.png\t0,5\n")]:
        message = refusal(write(tmp_path, name, text))
        assert message.endswith(f"{name}:2: content_weight '0,5' is not a number (a decimal comma is read only in "
                                f";-separated manifests)")
    [pair] = read(write(tmp_path, "m.csv", 'content,style,style_blend\na.png,x.png|y.png,"1,3"\n'))
    assert pair.style_blend == (0.25, 0.75)
    message = refusal(write(tmp_path, "semi.csv", "content;style;style_blend\na.png;x.png|y.png;1,3\n"))
    assert "semi.csv:2: expected 2 style_blend weights" in message  # in a ; file the comma is a decimal one


def test_header_problems(tmp_path):
    assert "expected a header row with columns content,style" in refusal(write(tmp_path, "a.csv", "photo;art\n"))
    message = refusal(write(tmp_path, "b.csv", "content,style,Content\na.png,b.png,c.png\n"))
    assert message.endswith("b.csv:1: column content appears more than once in the header")
    message = refusal(write(tmp_path, "c.csv", "content,style\na.png,b.png,,\nd, 1.png,b.png\n"))
    assert "c.csv:3: 3 cells but 2 columns in the header" in message  # trailing empty cells are fine, not extras


# --- numbers -------------------------------------------------------------------------------------------------------

NON_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "-Infinity", "1e400"]


@pytest.mark.parametrize("column", ["content_weight", "style_weight", "seed"])
@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_numbers_are_refused(tmp_path, column, value):
    message = refusal(write(tmp_path, "m.csv", f"content,style,{column}\na.png,b.png,{value}\n"))
    assert re.search(rf"m\.csv:2: .*{column}", message), message


@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_style_blend_is_refused(tmp_path, value):
    message = refusal(write(tmp_path, "m.csv", f"content,style,style_blend\na.png,x.png|y.png,1|{value}\n"))
    assert re.search(r"m\.csv:2: .*style_blend", message), message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("column, template", [("content_weight", "{}"), ("style_weight", "{}"), ("seed", "{}"),
                                              ("style_blend", "[1, {}]"), ("content", "{}"), ("output", "{}"),
                                              ("content_mask", "{}"), ("style_masks", "[{}, null]")])
def test_json_nan_literals_are_refused(tmp_path, literal, column, template):
    """Python's json reads NaN and Infinity by default; every column refuses them, paths included (NaN is
    not a file called "nan")."""
    row = {"content": "a.png", "style": "x.png|y.png"}
    text = json.dumps(row)[:-1] + f', "{column}": {template.format(literal)}}}\n'
    message = refusal(write(tmp_path, "m.jsonl", text))
    assert re.search(rf"m\.jsonl:1: (expected )?{column} ", message), message


@pytest.mark.parametrize("column, value", [("content_weight", "-1"), ("style_weight", "-0.5"),
                                           ("style_blend", "-1|2")])
def test_negative_weights_are_refused(tmp_path, column, value):
    message = refusal(write(tmp_path, "m.csv", f"content,style,{column}\na.png,x.png|y.png,{value}\n"))
    assert "m.csv:2: " in message and column in message and ">= 0" in message


@pytest.mark.parametrize("value, expected", [('"1.5"', "seed '1.5' is not an integer"),
                                             ("1.5", "seed 1.5 is not an integer"),
                                             ("true", "seed True is not an integer"),
                                             (str(2**63), f"expected seed in [-2**63, 2**63), got {2**63}")])
def test_seeds_must_be_integers_jax_takes(tmp_path, value, expected):
    message = refusal(write(tmp_path, "m.jsonl", f'{{"content": "a.png", "style": "b.png", "seed": {value}}}\n'))
    assert message.endswith(f"m.jsonl:1: {expected}")


def test_integral_and_negative_seeds_are_read(tmp_path):
    lines = [f'{{"content": "{name}.png", "style": "b.png", "seed": {seed}}}' for name, seed in
             [("a", 7.0), ("b", '"5.0"'), ("c", -3), ("d", 2**63 - 1)]]
    assert [p.seed for p in read(write(tmp_path, "m.jsonl", "\n".join(lines)))] == [7, 5, -3, 2**63 - 1]


def test_bools_are_not_weights(tmp_path):
    message = refusal(write(tmp_path, "m.jsonl", '{"content": "a.png", "style": "b.png", "style_weight": true}\n'))
    assert message.endswith("m.jsonl:1: style_weight True is not a number")


def test_empty_cells_mean_the_default(tmp_path):
    header = "content,style,output,content_weight,style_weight,seed,style_blend,content_mask,style_masks\n"
    csv_pairs = read(write(tmp_path, "m.csv", header + "a.png,x.png|y.png,,,  ,,,,\n"))
    nulls = dict.fromkeys(header.strip().split(",")[2:])
    jsonl_pairs = read(write(tmp_path, "m.jsonl", json.dumps({"content": "a.png", "style": "x.png|y.png", **nulls})))
    for [pair] in (csv_pairs, jsonl_pairs):
        assert pair.output == tmp_path / "out" / "a__x+y.png"
        assert (pair.content_weight, pair.style_weight, pair.seed, pair.style_blend) == (None, None, None, None)
        assert (pair.content_mask, pair.style_masks, pair.error) == (None, (), None)
