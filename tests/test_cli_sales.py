"""`smartstock sales import|summary` through the real command, as a plant user runs it."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BAD_FILE = ("\ufeffsku;date;quantity;price\n"
            "A;2024-01-01;5;2,5\n"
            "\n"
            "A;2024-01-32;5;2\n"      # line 4: bad date
            "B;2024-01-01;-1;2\n"     # line 5: negative
            "B;2024-01-02;3;\n"
            "C;2024-01-03;x;1\n")     # line 7: not a number


def test_bad_rows_exit_3_good_rows_kept_second_import_adds_nothing(cli, tmp_path):
    f = tmp_path / "export.csv"
    f.write_text(BAD_FILE, encoding="utf-8")
    r = cli("sales", "import", f)
    assert r.rc == 3, r.err
    assert "Traceback" not in r.err
    for line, word in [(4, "not a date"), (5, "negative"), (7, "not a number")]:
        assert f"{f}:{line}: " in r.err and word in r.err
    assert "5 read, 2 stored, 0 duplicates skipped, 3 rejected" in r.out

    summary = json.loads(cli("sales", "summary", "--json").out)
    assert summary["rows"] == 2 and summary["total_quantity"] == 8
    assert summary["skus"]["A"] == {"rows": 1, "total_quantity": 5.0, "first_date": "2024-01-01", "last_date": "2024-01-01"}

    again = cli("sales", "import", f, "--json")
    assert again.rc == 3
    out = json.loads(again.out)
    assert (out["stored"], out["duplicates"], out["rejected"], out["columns"]) == (0, 2, 3, "sku")
    assert json.loads(cli("sales", "summary", "--json").out)["rows"] == 2


def test_unusable_files_are_clear_errors_and_store_nothing(cli, tmp_path):
    f = tmp_path / "wrong.csv"
    f.write_text("item,day,qty\nA,2024-01-01,1\n")
    r = cli("sales", "import", f)
    assert r.rc == 3 and "missing required columns" in r.err and "'item', 'day', 'qty'" in r.err
    assert "sku,date,quantity" in r.err and "Traceback" not in r.err
    r = cli("sales", "import", tmp_path / "missing.csv")
    assert r.rc == 3 and "not found" in r.err
    assert json.loads(cli("sales", "summary", "--json").out) == {"rows": 0, "total_quantity": 0, "skus": {}}


def test_nixtla_header_and_book_stock(cli, tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("unique_id,ds,y\nP1,2024-01-01,4\nP1,2024-01-02,6\n")
    r = cli("sales", "import", f, "--book-stock", "--state-dir", tmp_path / "other")
    assert r.rc == 0, r.err
    stock = json.loads(cli("stock", "--json", "--state-dir", tmp_path / "other").out)
    assert stock["skus"]["P1"]["sold"] == 10 and stock["skus"]["P1"]["on_hand"] == -10
    # The default state dir (SMARTSTOCK_STATE_DIR) was not touched.
    assert json.loads(cli("stock", "--json").out) == {"skus": {}}


CSV_PIECES = st.sampled_from(["sku", "date", "quantity", "unique_id", "ds", "y", "A", "2024-01-01", "2024-13",
                              "5", "-1", "nan", "1,5", ",", ";", "\t", "\n", "\r\n", "\"", "\ufeff", "\x00", "é", " "])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200),
                 st.lists(CSV_PIECES, max_size=40).map(lambda p: ("sku,date,quantity\n" + "".join(p)).encode())))
def test_arbitrary_input_through_the_cli_exits_0_or_3_without_traceback(cli, tmp_path, data):
    f = tmp_path / "fuzz.csv"
    f.write_bytes(data)
    r = cli("sales", "import", f)
    assert r.rc in (0, 3), (r.rc, r.err)
    assert "Traceback" not in r.err and "Traceback" not in r.out
