"""Datasets: HH transcript parsing, the embedded synthetic set and preference splits."""
