"""How people drive exprgrad: the command line, the REPL, drawings, plots and the import hook."""
