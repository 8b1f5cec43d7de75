package main

import "context"

func rowCapture(ctx context.Context, c *cfg, rep *report) error    { return nil }
func rowFUSE(ctx context.Context, c *cfg, rep *report) error       { return nil }
func stormChild(args []string)                                     {}
