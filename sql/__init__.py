"""The serving DDL and the app's queries (``<dialect>/*.sql``, ``queries/*.sql``), shipped as package data.

This folder is installed as ``deepcuts.sql``; read its files with :mod:`deepcuts.sql_files`.
"""
