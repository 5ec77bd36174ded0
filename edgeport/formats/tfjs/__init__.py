"""TF.js: the pinned npm packages (lockfile), where they are installed, and the ops they execute."""
