"""matching: keeps each program's pool and proposes scored, explained, capacity-safe matches."""
