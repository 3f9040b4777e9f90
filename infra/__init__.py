"""Infrastructure of the project: the local stack (``infra.stack``) and its data folders."""
