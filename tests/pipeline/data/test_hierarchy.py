from pipeline.data.hierarchy import parse_is_a, parse_words, read_hierarchy

WORDS = "n0\tentity\nn1\tanimal, beast\nn2\tdog\nn3\tcat\nn4\tplant\n"
IS_A = "n0 n1\nn0 n4\nn1 n2\nn1 n3\n"


def test_leaves_ancestors_siblings(tmp_path):
    (tmp_path / "words.txt").write_text(WORDS)
    (tmp_path / "wordnet.is_a.txt").write_text(IS_A)
    h = read_hierarchy(str(tmp_path))
    assert h.leaves() == ["n2", "n3", "n4"]
    assert h.ancestors("n2") == {"n1", "n0"}
    assert h.descendants("n0") == {"n1", "n2", "n3", "n4"}
    assert h.siblings("n2") == {"n3"}
    assert h.names["n1"] == "animal, beast"


def test_parse_helpers():
    assert parse_words("a\tx y\n")["a"] == "x y"
    assert parse_is_a("p c\n", "u").children == {"p": ["c"]}
