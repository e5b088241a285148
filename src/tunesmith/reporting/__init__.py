"""Pieces shared by tunesmith's self-contained HTML reports (quickstart, evaluate, gate): inline
SVG charts (``chart.line_chart``, ``bars.bar_chart``), metric/confusion/example views and value
formatting (``view.py``), the stylesheet and Jinja macros (``templates/``). No stage imports
another stage's report; they all import this."""
