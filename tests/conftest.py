"""Shared fixtures: experiment notebooks run by papermill, each test module training in its own folder."""
import os

import pytest


@pytest.fixture(scope="module")
def private_data_dir(tmp_path_factory):
    "This module's kernels train in their own data folder (they inherit the environment); restored after."
    old = os.environ.get("EELAB_DATA")
    os.environ["EELAB_DATA"] = str(tmp_path_factory.mktemp("eelab-data"))
    yield os.environ["EELAB_DATA"]
    if old is None:
        os.environ.pop("EELAB_DATA")
    else:
        os.environ["EELAB_DATA"] = old


@pytest.fixture(scope="module")
def run_smoke(private_data_dir, tmp_path_factory):
    "run_smoke(name, params): the experiment notebook run once as eelab-lab runs it; its results.json."
    from eelab.lab import run_experiment

    def run(name: str, params: dict, timeout: int = 600) -> dict:
        return run_experiment(name, tmp_path_factory.mktemp("out"), params, timeout=timeout)

    return run
