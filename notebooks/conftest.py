"""`pytest --nbmake notebooks/` runs the tutorials in quick mode unless LEVIATHAN_QUICK is already set.

The kernels nbmake starts inherit this process's environment; quick mode runs every
cell with fewer steps and smaller samples (see each notebook's first cell).
"""

import os

os.environ.setdefault("LEVIATHAN_QUICK", "1")
