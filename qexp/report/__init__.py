"""Reports: sweep tables, plots, HTML pages, paper comparisons."""
