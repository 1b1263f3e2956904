"""JupyterHub spawners that give each server a GPU slice within its tenant's quota."""
