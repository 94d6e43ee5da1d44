"""`qexp report` on records: formats, files, errors that name the option."""

from __future__ import annotations

import json

from qexp.report.cli import main


def test_formats_to_files(observer_sweep, tmp_path, capsys):
    for fmt in ("md", "csv", "json", "html"):
        out = tmp_path / f"t.{fmt}"
        assert main(["--records", str(observer_sweep), "--format", fmt, "--out", str(out)]) == 0
        assert out.exists() and out.stat().st_size > 100
    assert json.loads((tmp_path / "t.json").read_text())["table"][0]["quantizer"] == "none"
    # the HTML page holds its plots: nothing is written beside it
    written = sorted(x.name for x in tmp_path.iterdir() if x.is_file())
    assert written == ["t.csv", "t.html", "t.json", "t.md"]
    assert "data:image/png;base64," in (tmp_path / "t.html").read_text()
    assert "wrote" in capsys.readouterr().out


def test_stdout_table_and_options(observer_sweep, capsys):
    assert main(["--records", str(observer_sweep), "--baseline", "quantizer=fp16"]) == 0
    out = capsys.readouterr().out
    assert "quantizer=fp16 row" in out and "| ptq " in out
    assert main(["--records", str(observer_sweep), "--no-baseline", "--no-best"]) == 0
    out = capsys.readouterr().out
    assert "Δ" not in out and "**" not in out


def test_bad_option_is_named(observer_sweep, capsys):
    assert main(["--records", str(observer_sweep), "--cols", "bakend"]) == 2
    assert "--cols 'bakend'" in capsys.readouterr().err
    assert main(["--records", str(observer_sweep), "--baseline", "quantizer"]) == 2
    assert "--baseline" in capsys.readouterr().err


def test_no_records(tmp_path, capsys):
    assert main(["--records", str(tmp_path)]) == 1
    assert "no runs found" in capsys.readouterr().err
    # a directory that is not there is a refused command line (exit 2), as for `qexp ingest`
    assert main(["--records", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"qexp report: no such directory: {tmp_path / 'nope'}"
