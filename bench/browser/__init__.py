"""``tokenbench browser``: real Chromium tabs reading token streams (docs/browsers.md)."""
