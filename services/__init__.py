"""The three mentornet services; each runs alone with `python -m services.<name>`."""
