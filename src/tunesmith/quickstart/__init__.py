"""quickstart: the whole lifecycle offline on a tiny base tunesmith builds itself."""
