import unittest

import tinystats


class TinyStatsTest(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(tinystats.mean([1, 2, 3, 4]), 2.5)

    def test_median_odd_and_even(self):
        self.assertEqual(tinystats.median([3, 1, 2]), 2)
        self.assertEqual(tinystats.median([4, 1, 3, 2]), 2.5)

    def test_stdev(self):
        self.assertAlmostEqual(tinystats.stdev([2, 4, 4, 4, 5, 5, 7, 9]), 2.138, places=3)

    def test_zscores_center_on_zero(self):
        self.assertAlmostEqual(sum(tinystats.zscores([1, 2, 3, 10])), 0.0)

    def test_empty_input_is_an_error(self):
        for f in (tinystats.mean, tinystats.median, tinystats.stdev):
            with self.assertRaises(ValueError):
                f([])


if __name__ == "__main__":
    unittest.main()
