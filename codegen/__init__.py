"""npukit producer side: kernel specs, rendering, static checks and the staged build."""
