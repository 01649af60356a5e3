"""The peakend image's files (docker-compose.yml)."""
