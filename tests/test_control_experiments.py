"""A harness experiment's runs folder (control/experiments.py): a new folder for every start, even two in a second."""

from control.experiments import RUN_ID, Experiment


def test_two_starts_in_one_second_get_two_folders(tmp_path):
    # A bad --seconds makes each `python -m loadtest fate` stop at its parser: no cluster is started.
    for _ in range(5):  # until two starts fall in the same second (nearly always the first try)
        first = Experiment("fate", ["--seconds", "soon"], tmp_path)
        second = Experiment("fate", ["--seconds", "soon"], tmp_path)
        for experiment in (first, second):
            experiment.stop()
        if first.started == second.started:
            break
    assert first.started == second.started, "no two starts fell in one second"
    assert first.id != second.id and first.folder.is_dir() and second.folder.is_dir()
    assert second.id == f"{first.id}-2"
    assert RUN_ID.match(first.id) and RUN_ID.match(second.id)
