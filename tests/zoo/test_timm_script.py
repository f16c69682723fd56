"""gcp-timm runs a timm script with the gcp models registered, with the script's argv and exit status."""

from __future__ import annotations

import textwrap

from gcp.zoo.timm_script import main


def test_a_script_sees_the_gcp_models_and_its_own_arguments(tmp_path, capsys):
    script = tmp_path / "validate.py"
    script.write_text(textwrap.dedent("""
        import sys
        import timm
        model = timm.create_model("gcp_resnet18", num_classes=3)
        print("built", type(model).__name__, model.num_classes, sys.argv[1:])
        sys.exit(7 if "--fail" in sys.argv else 0)
    """))
    assert main([str(script), "--model", "gcp_resnet18"]) == 0
    assert "built GCPNet 3 ['--model', 'gcp_resnet18']" in capsys.readouterr().out
    assert main([str(script), "--fail"]) == 7


def test_a_missing_script_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope.py")]) == 2
    assert "no such script" in capsys.readouterr().err
    assert main([]) == 2
