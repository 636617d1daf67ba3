import pytest

from pipeline.data.annotations import annotation_xml, parse_annotation
from schemas.records import Box, DataError

# The real ILSVRC2013 DET val form, trimmed.
ILSVRC_XML = b"""<annotation>
	<folder>ILSVRC2013_val</folder>
	<filename>ILSVRC2013_val_00000001</filename>
	<source>
		<database>ILSVRC_2013</database>
	</source>
	<size>
		<width>500</width>
		<height>375</height>
	</size>
	<object>
		<name>n01751748</name>
		<bndbox>
			<xmin>0</xmin>
			<xmax>499</xmax>
			<ymin>10</ymin>
			<ymax>374</ymax>
		</bndbox>
	</object>
	<object>
		<name>n02084071</name>
		<bndbox>
			<xmin>12</xmin>
			<xmax>12</xmax>
			<ymin>20</ymin>
			<ymax>40</ymax>
		</bndbox>
	</object>
</annotation>
"""


def test_parses_ilsvrc_form_with_inclusive_coordinates():
    width, height, boxes = parse_annotation(ILSVRC_XML, "x.xml")
    assert (width, height) == (500, 375)
    assert boxes == (Box("n01751748", 0, 10, 499, 374), Box("n02084071", 12, 20, 12, 40))
    assert boxes[0].width == 500 and boxes[1].width == 1


def test_image_without_objects_is_valid():
    xml = b"<annotation><size><width>10</width><height>8</height></size></annotation>"
    assert parse_annotation(xml, "e.xml") == (10, 8, ())


def test_round_trip_through_writer():
    boxes = [Box("n1", 1, 2, 3, 4), Box("n2", 0, 0, 9, 7)]
    xml = annotation_xml("img", "folder", 10, 8, boxes).encode()
    assert parse_annotation(xml, "r.xml") == (10, 8, tuple(boxes))


@pytest.mark.parametrize(
    "xml, kind, words",
    [
        (ILSVRC_XML[:200], "malformed-xml", "not well-formed"),
        (b"", "malformed-xml", "not well-formed"),
        (b"<annotation><size><width>5</width></size></annotation>", "malformed-xml", "<height>"),
        (b"<root/>", "malformed-xml", "<root>"),
        (
            b"<annotation><size><width>x</width><height>5</height></size></annotation>",
            "malformed-xml",
            "not a number",
        ),
        (
            ILSVRC_XML.replace(b"<xmax>12</xmax>", b"<xmax>5</xmax>"),
            "invalid-box",
            "min > max",
        ),
        (
            ILSVRC_XML.replace(b"<xmax>499</xmax>", b"<xmax>500</xmax>"),
            "invalid-box",
            "outside the 500x375 image",
        ),
        (
            ILSVRC_XML.replace(b"<ymin>10</ymin>", b"<ymin>-1</ymin>"),
            "invalid-box",
            "outside",
        ),
        (b'<!DOCTYPE a [<!ENTITY x "y">]><annotation/>', "malformed-xml", "DTD"),
    ],
)
def test_bad_annotations_name_file_and_problem(xml, kind, words):
    with pytest.raises(DataError) as err:
        parse_annotation(xml, "bad/file.xml")
    assert err.value.problem.kind == kind
    assert "bad/file.xml" in str(err.value) and words in str(err.value)


def test_unknown_category():
    with pytest.raises(DataError, match="n02084071 is not a detection category") as err:
        parse_annotation(ILSVRC_XML, "u.xml", known_wnids={"n01751748"})
    assert err.value.problem.kind == "unknown-category"
