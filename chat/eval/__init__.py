"""The evaluation set of the chat translators: questions over every catalog
table with their expected result rows, on deterministic fixture data
(``fixtures.load``), and the runner that measures execution accuracy."""
