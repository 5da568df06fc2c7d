"""The browser app: `streamlit run app.py`.

The pages (`pages/`) are thin; the work is done by `rag` (one `Rag` and one job registry per
process, see `pages/common.py`); `pages/shell.py` draws what is around every page.
"""

from pages.shell import main

main()
