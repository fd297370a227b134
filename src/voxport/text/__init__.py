"""Text as people write it, turned into what a model should say: normalization (numbers, dates, units... read out
in English and Chinese), a small SSML subset (pauses, say-as, sub), and offsets that lead every spoken character
back to the input it came from, so word timings can be given in the user's own words."""
