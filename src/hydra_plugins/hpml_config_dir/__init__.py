"""Hydra search-path plugin: the user's config folder before hpml's own (hpml_bench.config.search_path).

Hydra finds it in the hydra_plugins namespace package and calls it whenever it builds a search
path -- for `hpml train` (hydra.main), for every compose() and for `--cfg` / `--help` / `-m` --
so one rule holds everywhere. It only touches a search path whose main folder is hpml's, so
other Hydra apps in the same environment are left alone.
"""
from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.plugins.search_path_plugin import SearchPathPlugin


class HpmlConfigDirSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        try:
            from hpml_bench.config.search_path import HPML_CONF, user_conf_dir
        except ImportError:  # another hpml_bench (an older checkout first on sys.path) has no user folders
            return

        main = [e for e in search_path.get_path() if e.provider == "main"]
        if not main or Path(main[0].path.removeprefix("file://")).resolve() != HPML_CONF:
            return
        user = user_conf_dir()
        if user is not None:
            search_path.prepend("hpml-user", f"file://{user}", anchor=SearchPathQuery(provider="main"))
