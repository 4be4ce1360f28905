"""Loaders that write the Parquet tables behind the Feast feature views."""
