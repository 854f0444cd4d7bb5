"""The minGPT demo notebook (src/submission/mingpt-demo/play_char.ipynb) runs from start to end.

It is executed as a user would run it in Jupyter: a python3 kernel started in
the notebook's own folder, every cell in order. Its last cell prints a sample
of the trained model.
"""
import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / 'src' / 'submission' / 'mingpt-demo' / 'play_char.ipynb'


def python3_kernel_of_this_interpreter(folder):
    """A `python3` kernelspec that starts this interpreter (the venv's).

    JUPYTER_PATH comes first in Jupyter's search, so a python3 kernel a user
    installed elsewhere (with another Python, without torch) cannot be picked.
    """
    spec = folder / 'kernels' / 'python3'
    spec.mkdir(parents=True)
    (spec / 'kernel.json').write_text(json.dumps({
        'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
        'display_name': 'Python 3', 'language': 'python',
    }))
    return str(folder)


def test_notebook_runs_and_samples(tmp_path, monkeypatch):
    monkeypatch.setenv('JUPYTER_PATH', python3_kernel_of_this_interpreter(tmp_path / 'jupyter'))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get('outputs') for c in nb.cells if c.cell_type == 'code'), \
        'the notebook is committed with its outputs cleared'
    client = NotebookClient(nb, timeout=300, kernel_name='python3',
                            resources={'metadata': {'path': str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if o.output_type == 'error']
    assert not errors
    last = [c for c in nb.cells if c.cell_type == 'code'][-1]
    printed = ''.join(o.text for o in last.outputs if o.output_type == 'stream' and o.name == 'stdout')
    sample = printed.strip()
    assert isinstance(sample, str) and sample, 'the last cell prints no sample'
    assert sample.startswith('The cat '), 'the sample continues the notebook\'s context'
    assert len(sample) > len('The cat ')
