"""Writes console scripts into ./bin, as `pip install` would for the node packages: an
executable that runs the package's main() with this interpreter."""

import stat
import sys
from pathlib import Path

here = Path.cwd()
bin_dir = here / "bin"
bin_dir.mkdir(exist_ok=True)
for name in sys.argv[1:]:
    package = name.replace("-", "_")
    script = bin_dir / name
    script.write_text(f"#!{sys.executable}\n"
                      "import sys\n"
                      f"sys.path.insert(0, {str(here / 'packages')!r})\n"
                      f"from {package}.main import main\n"
                      "sys.exit(main())\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"installed {name} into {bin_dir}")
