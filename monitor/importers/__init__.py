"""Importers: turn recorded agent traces from other tools into intentwatch events."""
