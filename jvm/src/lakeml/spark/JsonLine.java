package lakeml.spark;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import java.io.IOException;
import java.io.StringWriter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF2;

/**
 * One line of a JSON-lines file, read strictly in one pass of Jackson's streaming parser
 * (lakeml.lake.readers._read_json calls it as a Spark SQL function).
 *
 * <p>{@code call(line, conf)}: {@code conf} is {@code max_line_bytes \u0001 schema_drift
 * (\u0001 column \u0001 type)*}. The answer is a row of {@code values} (the declared columns'
 * values as text, in conf's order; null unless the line is a record), {@code _blank} (the line holds only whitespace), {@code _problem}
 * (why the line is no record: more than one JSON object, not a JSON object, a key twice, an
 * undeclared field under {@code schema_drift: quarantine}; null when it is one),
 * {@code _rescued} (the undeclared fields' values as a JSON object of strings, null ones left
 * out), {@code _drift} ({@code undeclared: a, b}) and {@code _shape} (a JSON object or array
 * where a string is declared). A value's text is the string's, or the number's token exactly
 * as the file has it (12.50 stays 12.50, 1e400 and NaN stay as written, for the typing to
 * judge), or a nested object's or array's compact JSON. Standard JSON only (RFC 8259: no
 * comments, single quotes, unquoted names, leading zeros or trailing commas), except the
 * NaN and Infinity tokens, which are read so that their reason can name them.
 */
public final class JsonLine implements UDF2<String, String, Row> {
  private static final long serialVersionUID = 1L;
  // what Java regex \s matches, and the byte-order mark (the Python side's WHITESPACE)
  private static final String WHITESPACE = " \t\n\u000b\f\r\ufeff";
  static final String NOT_JSON = "malformed record: not a JSON object";
  static final String MORE = "malformed record: more than one JSON object on the line";

  private transient String confText;
  private transient Conf conf;

  private static final class Conf {
    final String policy;
    final String[] cols;
    final boolean[] isString;
    final String[] types;
    final Map<String, Integer> index = new HashMap<>();
    final JsonFactory factory;

    Conf(String text) {
      String[] parts = text.split("\u0001", -1);
      int maxLen = Integer.parseInt(parts[0]);
      policy = parts[1];
      int n = (parts.length - 2) / 2;
      cols = new String[n];
      types = new String[n];
      isString = new boolean[n];
      for (int i = 0; i < n; i++) {
        cols[i] = parts[2 + 2 * i];
        types[i] = parts[3 + 2 * i];
        isString[i] = types[i].equals("string");
        index.put(cols[i], i);
      }
      factory = JsonFactory.builder()
          .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
          .streamReadConstraints(StreamReadConstraints.builder().maxStringLength(Math.max(maxLen, 1000)).build())
          .build();
    }
  }

  private Conf conf(String text) {
    if (conf == null || !text.equals(confText)) {
      conf = new Conf(text);
      confText = text;
    }
    return conf;
  }

  static String trim(String s) {
    int a = 0;
    int b = s.length();
    while (a < b && WHITESPACE.indexOf(s.charAt(a)) >= 0) {
      a++;
    }
    while (b > a && WHITESPACE.indexOf(s.charAt(b - 1)) >= 0) {
      b--;
    }
    return s.substring(a, b);
  }

  @Override
  public Row call(String line, String confText) throws IOException {
    Conf c = conf(confText);
    int n = c.cols.length;
    Object[] out = new Object[6];
    if (line == null) {
      return RowFactory.create(out);
    }
    String t = trim(line);
    if (t.isEmpty()) {
      out[1] = Boolean.TRUE;
      return RowFactory.create(out);
    }
    out[1] = Boolean.FALSE;
    String[] values = new String[n];
    JsonToken[] kinds = new JsonToken[n];
    List<String> keys = new ArrayList<>();
    List<String> extraKeys = new ArrayList<>();
    List<String> extraValues = new ArrayList<>();
    try (JsonParser p = c.factory.createParser(t)) {
      if (p.nextToken() != JsonToken.START_OBJECT) {
        out[2] = NOT_JSON;
        return RowFactory.create(out);
      }
      JsonToken tok;
      while ((tok = p.nextToken()) == JsonToken.FIELD_NAME) {
        String k = p.currentName();
        JsonToken v = p.nextToken();
        String text = text(c, p, v);
        keys.add(k);
        Integer i = c.index.get(k);
        if (i != null) {
          values[i] = text;
          kinds[i] = v;
        } else {
          extraKeys.add(k);
          extraValues.add(text);
        }
      }
      if (tok != JsonToken.END_OBJECT) {
        out[2] = NOT_JSON;
        return RowFactory.create(out);
      }
      int end = (int) p.currentLocation().getCharOffset();
      String rest = t.substring(Math.min(end, t.length()));
      if (!trim(rest).isEmpty()) {
        out[2] = moreObjects(c, rest) ? MORE : NOT_JSON;
        return RowFactory.create(out);
      }
    } catch (JsonProcessingException e) {
      out[2] = NOT_JSON;
      return RowFactory.create(out);
    }
    LinkedHashSet<String> undeclared = new LinkedHashSet<>(extraKeys);
    if (!undeclared.isEmpty()) {
      out[4] = "undeclared: " + String.join(", ", undeclared);
    }
    String twice = twice(keys);
    if (twice != null) {
      out[2] = "malformed record: the key '" + twice + "' is twice in the object";
      return RowFactory.create(out);
    }
    if (!undeclared.isEmpty() && c.policy.equals("quarantine")) {
      out[2] = "schema drift: undeclared field(s) " + String.join(", ", undeclared) + " (schema_drift: quarantine)";
      return RowFactory.create(out);
    }
    out[0] = values;
    out[3] = rescued(c, extraKeys, extraValues);
    List<String> shapes = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      if (c.isString[i] && (kinds[i] == JsonToken.START_OBJECT || kinds[i] == JsonToken.START_ARRAY)) {
        String kind = kinds[i] == JsonToken.START_OBJECT ? "object" : "array";
        shapes.add(c.cols[i] + ": a JSON " + kind + " where a " + c.types[i] + " is declared");
      }
    }
    if (!shapes.isEmpty()) {
      out[5] = String.join("; ", shapes);
    }
    return RowFactory.create(out);
  }

  /** A value as text: a string's own text, a number's token as written, null for null,
   * true/false, or an object's or array's compact JSON. */
  private static String text(Conf c, JsonParser p, JsonToken v) throws IOException {
    switch (v) {
      case VALUE_NULL:
        return null;
      case VALUE_STRING:
      case VALUE_NUMBER_INT:
      case VALUE_NUMBER_FLOAT:
      case VALUE_TRUE:
      case VALUE_FALSE:
        return p.getText();
      default:
        StringWriter w = new StringWriter();
        try (JsonGenerator g = c.factory.createGenerator(w)) {
          g.copyCurrentStructure(p);
        }
        return w.toString();
    }
  }

  /** Whether what follows a complete object is more objects, separated by commas or not. */
  private static boolean moreObjects(Conf c, String rest) {
    String r = trim(rest);
    boolean commas = r.startsWith(",");
    // with commas the objects are read as the elements of an array; without, as root values
    try (JsonParser p = c.factory.createParser(commas ? "[" + r.substring(1) + "]" : r)) {
      if (commas && p.nextToken() != JsonToken.START_ARRAY) {
        return false;
      }
      JsonToken tok;
      int seen = 0;
      while ((tok = p.nextToken()) == JsonToken.START_OBJECT) {
        p.skipChildren();
        seen++;
      }
      return seen > 0 && (commas ? tok == JsonToken.END_ARRAY && p.nextToken() == null : tok == null);
    } catch (IOException e) {
      return false;
    }
  }

  /** The first key, in the object's order, that it holds more than once; or null. */
  private static String twice(List<String> keys) {
    if (keys.size() < 2) {
      return null;
    }
    Map<String, Integer> count = new HashMap<>();
    for (String k : keys) {
      count.merge(k, 1, Integer::sum);
    }
    for (String k : keys) {
      if (count.get(k) > 1) {
        return k;
      }
    }
    return null;
  }

  private static String rescued(Conf c, List<String> keys, List<String> values) throws IOException {
    StringWriter w = new StringWriter();
    int kept = 0;
    try (JsonGenerator g = c.factory.createGenerator(w)) {
      g.writeStartObject();
      for (int i = 0; i < keys.size(); i++) {
        if (values.get(i) != null) {
          g.writeStringField(keys.get(i), values.get(i));
          kept++;
        }
      }
      g.writeEndObject();
    }
    return kept == 0 ? null : w.toString();
  }
}
