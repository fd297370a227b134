"""Model families behind one small interface (see base.SpeechModel)."""
