"""The shipped configs: `lsda ... --config NAME` finds NAME.yaml here, from any directory
and from an installed wheel (they are package data)."""
