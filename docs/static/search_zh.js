// Sphinx's Chinese search data (html_search_language = 'zh') sets `window.Stemmer = ChineseStemmer`, a name it never
// defines (the stemmer code it ships is the English one), so the search page stops before it returns a hit. Chinese
// terms are whole jieba words and need no stemming; English words in the same index were stemmed in English, so the
// missing name is given to the English stemmer. Loaded before language_data.js.
window.ChineseStemmer = function () { return new EnglishStemmer(); };
