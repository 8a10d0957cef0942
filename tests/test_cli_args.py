"""The commands name a run with the same -r/-p/-c arguments (smalldata.cli._cli.add_run_arguments)."""
from pathlib import Path

import pytest

from smalldata.cli import runSmallDataAna, smd_boz, smd_dark, smd_producer, smd_runs, smd_simulate, smd_submit

# command, the other required arguments, whether -c is required, its default, whether -p is required,
# whether the parser requires -r (the producer and the session check it themselves: not with --bridge / --live)
COMMANDS = [
    (smd_producer, [], True, None, False, False),
    (smd_dark, [], False, None, False, True),
    (smd_boz, ["-d", "615", "-g", "3"], False, None, False, True),
    (runSmallDataAna, [], False, Path("producer.yaml"), False, False),
]


@pytest.mark.parametrize("command, others, config_required, config_default, proposal_required, run_required",
                         COMMANDS)
def test_run_arguments(command, others, config_required, config_default, proposal_required, run_required):
    parser = command.build_parser()
    args = parser.parse_args(["-r", "614", "-c", "a.yaml", "-p", "2937"] + others)
    assert (args.run, args.proposal, args.config) == (614, 2937, Path("a.yaml"))
    args = parser.parse_args(["--run", "7", "--config", "b.yaml"] + others)
    assert (args.run, args.proposal, args.config) == (7, None, Path("b.yaml"))
    if not config_required:
        assert parser.parse_args(["-r", "7"] + others).config == config_default
    for missing in (["-c", "a.yaml"] if run_required else None, ["-r", "7"] if config_required else None):
        if missing is not None:
            with pytest.raises(SystemExit) as exc:
                parser.parse_args(missing + others)
            assert exc.value.code == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["-r", "x"] + others)  # not a run number


@pytest.mark.parametrize("command, run_required", [(smd_submit, True), (smd_runs, False)])
def test_run_range_arguments(command, run_required):
    """The commands over several runs take -r/--runs as a range with the same -p/-c."""
    parser = command.build_parser()
    args = parser.parse_args(["-r", "610-612,620", "-c", "a.yaml", "-p", "2937"])
    assert (args.runs, args.proposal, args.config) == ("610-612,620", 2937, Path("a.yaml"))
    if run_required:
        with pytest.raises(SystemExit):
            parser.parse_args(["-c", "a.yaml"])
    else:
        assert parser.parse_args(["-c", "a.yaml"]).runs is None


def test_producer_without_a_run_or_a_stream_is_one_line(capsys):
    assert smd_producer.main(["-c", "a.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "-r/--run is required" in err[0] and "--bridge" in err[0]


def test_simulator_needs_a_proposal_and_takes_no_config():
    parser = smd_simulate.build_parser()
    args = parser.parse_args(["--root", "d", "-p", "2937", "-r", "614"])
    assert (args.run, args.proposal) == (614, 2937) and not hasattr(args, "config")
    with pytest.raises(SystemExit):
        parser.parse_args(["--root", "d", "-r", "614"])
